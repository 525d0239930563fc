//! The in-toto Statement v1 with an SLSA Provenance v1 predicate that an
//! attestlog entry carries.
//!
//! The statement is stored as canonical JSON (sorted keys, no insignificant
//! white space, integers only) so that the same claim always has the same
//! bytes: the attestation's `user_data` commits to those exact bytes, and the
//! log deduplicates on them. Parsing is strict about what attestlog reads and
//! lenient about everything else, so builders can add SLSA fields freely.
//!
//! `enclave-builder` writes buildType [`BUILD_TYPE`] (v2), whose
//! `externalParameters` also record where the build definition came from
//! ([`BuildDefinition`]) and which ref of the repository contains the commit
//! ([`SourceRef`]); a v2 statement without either, or with either malformed,
//! is refused. v1 statements ([`BUILD_TYPE_V1`]) and other builders' still
//! parse, with both fields `None` ("not recorded"): whether to accept that is
//! the verifier's policy (`spec/entry.md`).

use serde_json::{Map, Value};

use super::ClaimError;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PROVENANCE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The SLSA buildType of builds made by `enclave-builder`: v2 records where
/// the build definition came from and which ref of the repository contains
/// the commit (see [`BuildDefinition`] and [`SourceRef`]).
pub const BUILD_TYPE: &str = "https://attestlog.dev/buildtypes/nitro-bwrap/v2";
/// The earlier buildType, still parsed: it records neither the build
/// definition's origin nor a ref, so a verifier treats both as unrecorded.
pub const BUILD_TYPE_V1: &str = "https://attestlog.dev/buildtypes/nitro-bwrap/v1";
/// Longest ref name a v2 statement may record (git itself has no limit; a
/// ref is one line of a statement that must fit a 64 KiB entry).
pub const MAX_REF_NAME: usize = 1024;

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

/// Where the build command and outputs came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildDefinition {
    /// The repository's own file at the commit: its path from the
    /// repository root and the SHA-256 of its bytes.
    Repository { path: String, sha256: [u8; 32] },
    /// The builder's command line replaced it (one-process development
    /// builds only); nothing ties the command to the repository.
    Override,
}

/// Which ref of the named repository contains the commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceRef {
    /// A full ref name, `refs/heads/...` or `refs/tags/...`, that the
    /// repository advertised and whose history contains the commit.
    Ref(String),
    /// No advertised branch or tag contained the commit (it may live only
    /// in a fork) and the operator opted in to building it anyway.
    Unreferenced,
}

impl SourceRef {
    /// The ref name, when one contains the commit.
    pub fn name(&self) -> Option<&str> {
        match self {
            SourceRef::Ref(name) => Some(name),
            SourceRef::Unreferenced => None,
        }
    }
}

/// True for a ref name a v2 statement may record: `refs/heads/` or
/// `refs/tags/` and a non-empty rest, at most [`MAX_REF_NAME`] bytes, no
/// control characters or spaces.
pub fn is_recordable_ref(name: &str) -> bool {
    let rest = name
        .strip_prefix("refs/heads/")
        .or_else(|| name.strip_prefix("refs/tags/"));
    name.len() <= MAX_REF_NAME
        && rest.is_some_and(|r| !r.is_empty())
        && !name.bytes().any(|b| b <= b' ' || b == 0x7f)
}

/// The parts of the statement that attestlog checks. The full JSON stays
/// available in [`Statement::json`] for everything else.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub subjects: Vec<Subject>,
    /// The first resolved dependency that carries a `gitCommit` digest.
    pub source: SourceDependency,
    pub builder_id: String,
    /// Where the build definition came from; `None` when the statement does
    /// not say (buildType v1, or another builder's buildType).
    pub build_definition: Option<BuildDefinition>,
    /// The ref containing the commit; `None` when the statement does not
    /// say (buildType v1, or another builder's buildType).
    pub source_ref: Option<SourceRef>,
    pub json: Value,
}

/// What a builder fills in to produce a statement.
#[derive(Clone, Debug)]
pub struct StatementParams {
    pub subjects: Vec<Subject>,
    pub source: SourceDependency,
    /// The ref of the repository that contains the commit, or the
    /// operator's opt-in that none does.
    pub source_ref: SourceRef,
    /// Where the command and outputs came from.
    pub build_definition: BuildDefinition,
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
        let external = serde_json::json!({
            "repository": params.source.uri,
            "commit": params.source.git_commit,
            "command": params.command,
            "buildDefinition": definition_json(&params.build_definition),
            "sourceRef": source_ref_json(&params.source_ref),
        });
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
        if json.get("_type").and_then(Value::as_str) != Some(STATEMENT_TYPE) {
            return Err(ClaimError::StatementField("_type"));
        }
        if json.get("predicateType").and_then(Value::as_str) != Some(PROVENANCE_TYPE) {
            return Err(ClaimError::StatementField("predicateType"));
        }
        let subjects = parse_subjects(field(&json, "subject")?)?;
        let predicate = field(&json, "predicate")?;
        let definition = field(predicate, "buildDefinition")?;
        let deps = field(definition, "resolvedDependencies")?;
        let source = deps
            .as_array()
            .into_iter()
            .flatten()
            .find_map(parse_source)
            .ok_or(ClaimError::StatementField(
                "resolvedDependencies[].digest.gitCommit",
            ))?;
        // attestlog's own buildTypes repeat the source in externalParameters;
        // a reader of either must see the same commit. v2 also records the
        // build definition's origin and the ref.
        let build_type = definition.get("buildType").and_then(Value::as_str);
        let (mut build_definition, mut source_ref) = (None, None);
        if build_type == Some(BUILD_TYPE) || build_type == Some(BUILD_TYPE_V1) {
            let external = field(definition, "externalParameters")?;
            let same = external.get("repository").and_then(Value::as_str) == Some(&source.uri)
                && external.get("commit").and_then(Value::as_str) == Some(&source.git_commit);
            if !same {
                return Err(ClaimError::StatementField("externalParameters.commit"));
            }
            if build_type == Some(BUILD_TYPE) {
                build_definition = Some(parse_definition(external.get("buildDefinition"))?);
                source_ref = Some(parse_source_ref(external.get("sourceRef"))?);
            }
        }
        let builder_id = field(field(predicate, "runDetails")?, "builder")?
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(ClaimError::StatementField("runDetails.builder.id"))?
            .to_string();
        Ok(Statement {
            subjects,
            source,
            builder_id,
            build_definition,
            source_ref,
            json,
        })
    }

    /// The subject whose SHA-256 is `digest`, if the statement names it.
    pub fn subject_with_digest(&self, digest: &[u8; 32]) -> Option<&Subject> {
        self.subjects.iter().find(|s| &s.sha256 == digest)
    }
}

/// `v[name]`, or the error naming the missing field.
fn field<'a>(v: &'a Value, name: &'static str) -> Result<&'a Value, ClaimError> {
    v.get(name).ok_or(ClaimError::StatementField(name))
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

fn definition_json(definition: &BuildDefinition) -> Value {
    match definition {
        BuildDefinition::Repository { path, sha256 } => serde_json::json!({
            "source": "repository",
            "path": path,
            "digest": {"sha256": hex::encode(sha256)},
        }),
        BuildDefinition::Override => serde_json::json!({"source": "override"}),
    }
}

fn source_ref_json(source_ref: &SourceRef) -> Value {
    match source_ref {
        SourceRef::Ref(name) => serde_json::json!({"name": name}),
        SourceRef::Unreferenced => serde_json::json!({"unreferenced": true}),
    }
}

/// `externalParameters.buildDefinition` of a v2 statement: exactly one of
/// the two forms [`definition_json`] writes, nothing else.
fn parse_definition(value: Option<&Value>) -> Result<BuildDefinition, ClaimError> {
    const NAME: &str = "externalParameters.buildDefinition";
    let obj = value
        .and_then(Value::as_object)
        .ok_or(ClaimError::StatementField(NAME))?;
    let parsed = match obj.get("source").and_then(Value::as_str) {
        Some("override") if obj.len() == 1 => Some(BuildDefinition::Override),
        Some("repository") if obj.len() == 3 => {
            let path = obj
                .get("path")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty());
            let digest = obj
                .get("digest")
                .and_then(Value::as_object)
                .filter(|d| d.len() == 1)
                .and_then(|d| d.get("sha256"))
                .and_then(Value::as_str)
                .and_then(parse_lower_hex::<32>);
            path.zip(digest)
                .map(|(path, sha256)| BuildDefinition::Repository {
                    path: path.to_string(),
                    sha256,
                })
        }
        _ => None,
    };
    parsed.ok_or(ClaimError::StatementField(NAME))
}

/// `externalParameters.sourceRef` of a v2 statement: `{"name": REF}` with a
/// recordable ref, or `{"unreferenced": true}`.
fn parse_source_ref(value: Option<&Value>) -> Result<SourceRef, ClaimError> {
    const NAME: &str = "externalParameters.sourceRef";
    let obj = value.and_then(Value::as_object).filter(|o| o.len() == 1);
    let parsed = obj.and_then(|o| {
        if o.get("unreferenced") == Some(&Value::Bool(true)) {
            return Some(SourceRef::Unreferenced);
        }
        o.get("name")
            .and_then(Value::as_str)
            .filter(|n| is_recordable_ref(n))
            .map(|n| SourceRef::Ref(n.to_string()))
    });
    parsed.ok_or(ClaimError::StatementField(NAME))
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
