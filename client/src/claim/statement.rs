//! The in-toto Statement v1 with an SLSA Provenance v1 predicate that an
//! attestlog entry carries.
//!
//! The statement is stored as canonical JSON (sorted keys, no insignificant
//! white space, integers only) so that the same claim always has the same
//! bytes: the attestation's `user_data` commits to those exact bytes, and the
//! log deduplicates on them. Parsing is strict about what attestlog reads and
//! lenient about everything else, so builders can add SLSA fields freely.

use serde_json::{Map, Value};

use super::ClaimError;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PROVENANCE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The SLSA buildType of builds made by `enclave-builder`.
pub const BUILD_TYPE: &str = "https://attestlog.dev/buildtypes/nitro-bwrap/v1";

/// One built artifact: a file name and its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub name: String,
    pub sha256: [u8; 32],
}

/// The source a build consumed: a repository URI and the commit checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceDependency {
    pub uri: String,
    /// Hex commit id, 40 (SHA-1) or 64 (SHA-256) lowercase characters.
    pub git_commit: String,
}

/// The parts of the statement that attestlog checks. The full JSON stays
/// available in [`Statement::json`] for everything else.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub subjects: Vec<Subject>,
    /// The first resolved dependency that carries a `gitCommit` digest.
    pub source: SourceDependency,
    pub builder_id: String,
    pub json: Value,
}

/// What a builder fills in to produce a statement.
#[derive(Clone, Debug)]
pub struct StatementParams {
    pub subjects: Vec<Subject>,
    pub source: SourceDependency,
    /// The ref the user asked for, when the commit came from resolving one.
    pub source_ref: Option<String>,
    pub builder_id: String,
    pub builder_version: String,
    pub command: Vec<String>,
    pub started_on: String,
    pub finished_on: String,
    /// Free-form build parameters (environment, limits, ...), recorded as
    /// `internalParameters`.
    pub internal_parameters: Value,
    /// Submodules checked out for the build, recorded after the source in
    /// `resolvedDependencies`.
    pub submodules: Vec<SubmoduleDependency>,
}

/// A submodule the build used: its path, its URL when `.gitmodules` gives
/// an absolute one, and the commit the superproject records for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmoduleDependency {
    pub path: String,
    pub uri: Option<String>,
    pub git_commit: String,
}

impl Statement {
    /// Builds a statement and returns it with its canonical bytes.
    pub fn build(params: &StatementParams) -> Result<(Statement, Vec<u8>), ClaimError> {
        let subjects: Vec<Value> = params
            .subjects
            .iter()
            .map(|s| serde_json::json!({"name": s.name, "digest": {"sha256": hex::encode(s.sha256)}}))
            .collect();
        let mut external = serde_json::json!({
            "repository": params.source.uri,
            "commit": params.source.git_commit,
            "command": params.command,
        });
        if let (Some(r), Some(obj)) = (&params.source_ref, external.as_object_mut()) {
            obj.insert("ref".into(), Value::String(r.clone()));
        }
        let mut dependencies = vec![serde_json::json!({
            "uri": params.source.uri,
            "digest": {"gitCommit": params.source.git_commit},
        })];
        for sub in &params.submodules {
            let mut dep = serde_json::json!({
                "name": sub.path,
                "digest": {"gitCommit": sub.git_commit},
            });
            if let (Some(uri), Some(obj)) = (&sub.uri, dep.as_object_mut()) {
                obj.insert("uri".into(), Value::String(uri.clone()));
            }
            dependencies.push(dep);
        }
        let json = serde_json::json!({
            "_type": STATEMENT_TYPE,
            "subject": subjects,
            "predicateType": PROVENANCE_TYPE,
            "predicate": {
                "buildDefinition": {
                    "buildType": BUILD_TYPE,
                    "externalParameters": external,
                    "internalParameters": params.internal_parameters,
                    "resolvedDependencies": dependencies,
                },
                "runDetails": {
                    "builder": {
                        "id": params.builder_id,
                        "version": {"enclave-builder": params.builder_version},
                    },
                    "metadata": {
                        "startedOn": params.started_on,
                        "finishedOn": params.finished_on,
                    },
                },
            },
        });
        let bytes = canonical_json(&json)?;
        let statement = Statement::parse(&bytes)?;
        Ok((statement, bytes))
    }

    /// Parses statement bytes, requiring the canonical encoding and every
    /// field attestlog relies on.
    pub fn parse(bytes: &[u8]) -> Result<Statement, ClaimError> {
        let json: Value =
            serde_json::from_slice(bytes).map_err(|e| ClaimError::StatementJson(e.to_string()))?;
        if canonical_json(&json)? != bytes {
            return Err(ClaimError::StatementNotCanonical);
        }
        let field = |v: &Value, name: &'static str| -> Result<Value, ClaimError> {
            v.get(name).cloned().ok_or(ClaimError::StatementField(name))
        };
        if json.get("_type").and_then(Value::as_str) != Some(STATEMENT_TYPE) {
            return Err(ClaimError::StatementField("_type"));
        }
        if json.get("predicateType").and_then(Value::as_str) != Some(PROVENANCE_TYPE) {
            return Err(ClaimError::StatementField("predicateType"));
        }
        let subjects = parse_subjects(&field(&json, "subject")?)?;
        let predicate = field(&json, "predicate")?;
        let definition = field(&predicate, "buildDefinition")?;
        let deps = field(&definition, "resolvedDependencies")?;
        let source = deps
            .as_array()
            .into_iter()
            .flatten()
            .find_map(parse_source)
            .ok_or(ClaimError::StatementField(
                "resolvedDependencies[].digest.gitCommit",
            ))?;
        // attestlog's own buildType repeats the source in externalParameters;
        // a reader of either must see the same commit.
        if definition.get("buildType").and_then(Value::as_str) == Some(BUILD_TYPE) {
            let external = field(&definition, "externalParameters")?;
            let same = external.get("repository").and_then(Value::as_str) == Some(&source.uri)
                && external.get("commit").and_then(Value::as_str) == Some(&source.git_commit);
            if !same {
                return Err(ClaimError::StatementField("externalParameters.commit"));
            }
        }
        let builder_id = field(&field(&predicate, "runDetails")?, "builder")?
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(ClaimError::StatementField("runDetails.builder.id"))?
            .to_string();
        Ok(Statement {
            subjects,
            source,
            builder_id,
            json,
        })
    }

    /// The subject whose SHA-256 is `digest`, if the statement names it.
    pub fn subject_with_digest(&self, digest: &[u8; 32]) -> Option<&Subject> {
        self.subjects.iter().find(|s| &s.sha256 == digest)
    }
}

fn parse_subjects(value: &Value) -> Result<Vec<Subject>, ClaimError> {
    let list = value
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or(ClaimError::StatementField("subject"))?;
    list.iter()
        .map(|s| {
            let name = s
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or(ClaimError::StatementField("subject[].name"))?;
            let digest = s
                .get("digest")
                .and_then(|d| d.get("sha256"))
                .and_then(Value::as_str)
                .and_then(parse_lower_hex::<32>)
                .ok_or(ClaimError::StatementField("subject[].digest.sha256"))?;
            Ok(Subject {
                name: name.to_string(),
                sha256: digest,
            })
        })
        .collect()
}

fn parse_source(dep: &Value) -> Option<SourceDependency> {
    let uri = dep.get("uri")?.as_str().filter(|u| !u.is_empty())?;
    let commit = dep.get("digest")?.get("gitCommit")?.as_str()?;
    is_full_commit_id(commit).then(|| SourceDependency {
        uri: uri.to_string(),
        git_commit: commit.to_string(),
    })
}

/// True for a full SHA-1 (40) or SHA-256 (64) commit id in lowercase hex.
pub fn is_full_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn parse_lower_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Canonical JSON: object keys sorted by their UTF-8 bytes, no white space,
/// serde_json's string escaping, and integers only. For ASCII keys this is
/// the RFC 8785 (JCS) form; floats are refused because their text form is
/// not unique.
pub fn canonical_json(value: &Value) -> Result<Vec<u8>, ClaimError> {
    let mut out = Vec::new();
    write_canonical(value, &mut out)?;
    Ok(out)
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) -> Result<(), ClaimError> {
    match value {
        Value::Number(n) if !(n.is_i64() || n.is_u64()) => {
            return Err(ClaimError::StatementNotCanonical)
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(map, out)?,
        scalar => serde_json::to_writer(&mut *out, scalar)
            .map_err(|e| ClaimError::StatementJson(e.to_string()))?,
    }
    Ok(())
}

fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) -> Result<(), ClaimError> {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    out.push(b'{');
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, key)
            .map_err(|e| ClaimError::StatementJson(e.to_string()))?;
        out.push(b':');
        if let Some(v) = map.get(key) {
            write_canonical(v, out)?;
        }
    }
    out.push(b'}');
    Ok(())
}
