//! The verifier's policy: which logs, witnesses, roots, enclave images and
//! repositories a user trusts. Written in TOML; `spec/policy.md` documents
//! every field.
//!
//! Nothing here is trusted on first use: a policy with no log key is
//! refused, and roots other than AWS's are trusted only when listed.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::OffsetDateTime;

use crate::nitro::TrustRoots;
use crate::tlog::cosignature::CosignatureVerifierKey;
use crate::tlog::note::NoteVerifierKey;

/// A named, endorsed set of enclave image measurements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measurement {
    pub name: String,
    pub pcr0: Vec<u8>,
    pub pcr1: Vec<u8>,
    pub pcr2: Vec<u8>,
    /// Documents timestamped outside [not_before, not_after] are not endorsed.
    pub not_before: Option<OffsetDateTime>,
    pub not_after: Option<OffsetDateTime>,
}

/// A measurement that must not be accepted, whatever else endorses it. Each
/// PCR given must match; PCRs left out match anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    pub pcr0: Option<Vec<u8>>,
    pub pcr1: Option<Vec<u8>>,
    pub pcr2: Option<Vec<u8>>,
    pub reason: String,
}

#[derive(Clone)]
pub struct Policy {
    pub log_keys: Vec<NoteVerifierKey>,
    /// The log's origin line when it differs from its key name (the key
    /// name equal to the origin is only a SHOULD); `None`: a checkpoint's
    /// origin must be a listed key's name.
    pub log_origin: Option<String>,
    pub witnesses: Vec<CosignatureVerifierKey>,
    pub witness_quorum: usize,
    pub trust_roots: TrustRoots,
    pub measurements: Vec<Measurement>,
    pub revoked: Vec<Revocation>,
    /// Repository URIs accepted as build sources. Empty means any.
    pub allowed_repositories: Vec<String>,
    pub allow_debug: bool,
    /// Accept statements whose build definition came from the builder's
    /// command line instead of the repository (default false).
    pub allow_build_override: bool,
    /// Accept statements that do not record where the build definition came
    /// from or which ref contains the commit: buildType v1 and other
    /// builders' buildTypes (default false).
    pub allow_unrecorded_build_definition: bool,
    /// Accept statements whose commit no advertised branch or tag contained,
    /// built only because the operator opted in (default false).
    pub allow_unreferenced_commits: bool,
    /// Ref patterns, exact or ending in `*` (a prefix); when not empty the
    /// statement's recorded ref must match one.
    pub required_refs: Vec<RefPattern>,
    /// Refuse bundles without a DSSE envelope (v1 bundles, `dsse_missing`);
    /// default false, so bundles written before v2 stay verifiable.
    pub require_dsse: bool,
}

/// One `required_refs` entry: a full ref name, or a prefix when it ends in `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefPattern {
    Exact(String),
    Prefix(String),
}

impl RefPattern {
    /// Parses `refs/...` with at most one `*`, at the end.
    pub fn parse(text: &str) -> Result<RefPattern, PolicyError> {
        if !text.starts_with("refs/") {
            return Err(field(
                "required_refs",
                format!("{text:?} is not a full ref name (refs/heads/..., refs/tags/...)"),
            ));
        }
        match text.find('*') {
            None => Ok(RefPattern::Exact(text.to_string())),
            Some(i) if i == text.len() - 1 => Ok(RefPattern::Prefix(text[..i].to_string())),
            Some(_) => Err(field(
                "required_refs",
                format!("{text:?}: `*` is allowed only at the end"),
            )),
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            RefPattern::Exact(e) => name == e,
            RefPattern::Prefix(p) => name.starts_with(p.as_str()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("policy is not valid TOML: {0}")]
    Toml(String),
    #[error("policy field {field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
}

impl PolicyError {
    pub fn code(&self) -> &'static str {
        "bad_policy"
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    log_keys: Vec<String>,
    log_origin: Option<String>,
    #[serde(default)]
    witnesses: WitnessesFile,
    #[serde(default)]
    trust: TrustFile,
    #[serde(default)]
    measurement: Vec<MeasurementFile>,
    #[serde(default)]
    revoked: Vec<RevocationFile>,
    #[serde(default)]
    allowed_repositories: Vec<String>,
    #[serde(default)]
    allow_debug: bool,
    #[serde(default)]
    allow_build_override: bool,
    #[serde(default)]
    allow_unrecorded_build_definition: bool,
    #[serde(default)]
    allow_unreferenced_commits: bool,
    #[serde(default)]
    required_refs: Vec<String>,
    #[serde(default)]
    require_dsse: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WitnessesFile {
    #[serde(default)]
    keys: Vec<String>,
    quorum: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    #[serde(default = "yes")]
    aws_root: bool,
    #[serde(default)]
    extra_roots: Vec<PathBuf>,
}

impl Default for TrustFile {
    fn default() -> Self {
        TrustFile {
            aws_root: true,
            extra_roots: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MeasurementFile {
    name: String,
    pcr0: String,
    pcr1: String,
    pcr2: String,
    not_before: Option<String>,
    not_after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevocationFile {
    pcr0: Option<String>,
    pcr1: Option<String>,
    pcr2: Option<String>,
    #[serde(default)]
    reason: String,
}

fn field(field: &'static str, message: impl ToString) -> PolicyError {
    PolicyError::Field {
        field,
        message: message.to_string(),
    }
}

fn pcr(name: &'static str, hex_text: &str) -> Result<Vec<u8>, PolicyError> {
    let bytes = hex::decode(hex_text).map_err(|e| field(name, e))?;
    if ![32, 48, 64].contains(&bytes.len()) {
        return Err(field(name, "must be 32, 48 or 64 bytes of hex"));
    }
    Ok(bytes)
}

fn instant(name: &'static str, text: Option<&str>) -> Result<Option<OffsetDateTime>, PolicyError> {
    text.map(|t| {
        OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map_err(|e| field(name, format!("not an RFC 3339 time: {e}")))
    })
    .transpose()
}

impl Policy {
    /// Reads a policy file; relative root paths are resolved against the
    /// file's folder.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| PolicyError::Read(path.to_path_buf(), e))?;
        Policy::from_toml(&text, path.parent().unwrap_or(Path::new(".")))
    }

    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Policy, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| {
            PolicyError::Toml(e.message().lines().next().unwrap_or_default().to_string())
        })?;
        if file.log_keys.is_empty() {
            return Err(field(
                "log_keys",
                "at least one log verifier key is required",
            ));
        }
        let log_keys = file
            .log_keys
            .iter()
            .map(|k| NoteVerifierKey::parse(k).map_err(|e| field("log_keys", e)))
            .collect::<Result<Vec<_>, _>>()?;
        let witnesses = file
            .witnesses
            .keys
            .iter()
            .map(|k| CosignatureVerifierKey::parse(k).map_err(|e| field("witnesses.keys", e)))
            .collect::<Result<Vec<_>, _>>()?;
        let witness_quorum = file.witnesses.quorum.unwrap_or(witnesses.len());
        if witness_quorum > witnesses.len() {
            return Err(field(
                "witnesses.quorum",
                "larger than the number of witness keys",
            ));
        }
        let mut trust_roots = if file.trust.aws_root {
            TrustRoots::aws()
        } else {
            TrustRoots::empty()
        };
        for root in &file.trust.extra_roots {
            let path = base_dir.join(root);
            let pem = std::fs::read_to_string(&path)
                .map_err(|e| field("trust.extra_roots", format!("{}: {e}", path.display())))?;
            trust_roots
                .add_pem(&pem)
                .map_err(|e| field("trust.extra_roots", format!("{}: {e}", path.display())))?;
        }
        let measurements = file
            .measurement
            .iter()
            .map(|m| {
                Ok(Measurement {
                    name: m.name.clone(),
                    pcr0: pcr("measurement.pcr0", &m.pcr0)?,
                    pcr1: pcr("measurement.pcr1", &m.pcr1)?,
                    pcr2: pcr("measurement.pcr2", &m.pcr2)?,
                    not_before: instant("measurement.not_before", m.not_before.as_deref())?,
                    not_after: instant("measurement.not_after", m.not_after.as_deref())?,
                })
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;
        let revoked = file
            .revoked
            .iter()
            .map(|r| {
                if r.pcr0.is_none() && r.pcr1.is_none() && r.pcr2.is_none() {
                    return Err(field("revoked", "names no PCR"));
                }
                Ok(Revocation {
                    pcr0: r
                        .pcr0
                        .as_deref()
                        .map(|p| pcr("revoked.pcr0", p))
                        .transpose()?,
                    pcr1: r
                        .pcr1
                        .as_deref()
                        .map(|p| pcr("revoked.pcr1", p))
                        .transpose()?,
                    pcr2: r
                        .pcr2
                        .as_deref()
                        .map(|p| pcr("revoked.pcr2", p))
                        .transpose()?,
                    reason: r.reason.clone(),
                })
            })
            .collect::<Result<Vec<_>, PolicyError>>()?;
        let required_refs = file
            .required_refs
            .iter()
            .map(|r| RefPattern::parse(r))
            .collect::<Result<Vec<_>, PolicyError>>()?;
        if file
            .log_origin
            .as_deref()
            .is_some_and(|o| o.is_empty() || o.contains('\n'))
        {
            return Err(field("log_origin", "must be one non-empty line"));
        }
        Ok(Policy {
            log_keys,
            log_origin: file.log_origin,
            witnesses,
            witness_quorum,
            trust_roots,
            measurements,
            revoked,
            allowed_repositories: file.allowed_repositories,
            allow_debug: file.allow_debug,
            allow_build_override: file.allow_build_override,
            allow_unrecorded_build_definition: file.allow_unrecorded_build_definition,
            allow_unreferenced_commits: file.allow_unreferenced_commits,
            required_refs,
            require_dsse: file.require_dsse,
        })
    }

    /// The endorsed measurement matching these PCRs at `at`, if any.
    pub fn endorsement(
        &self,
        pcrs: [&[u8]; 3],
        at: OffsetDateTime,
    ) -> Result<&Measurement, MeasurementRefusal> {
        let matching: Vec<&Measurement> = self
            .measurements
            .iter()
            .filter(|m| [&m.pcr0[..], &m.pcr1, &m.pcr2] == pcrs)
            .collect();
        if matching.is_empty() {
            return Err(MeasurementRefusal::NotEndorsed);
        }
        matching
            .into_iter()
            .find(|m| m.not_before.is_none_or(|t| at >= t) && m.not_after.is_none_or(|t| at <= t))
            .ok_or(MeasurementRefusal::OutsideWindow)
    }

    /// The revocation that covers these PCRs, if any.
    pub fn revocation(&self, pcrs: [&[u8]; 3]) -> Option<&Revocation> {
        self.revoked.iter().find(|r| {
            [&r.pcr0, &r.pcr1, &r.pcr2]
                .iter()
                .zip(pcrs)
                .all(|(want, have)| want.as_deref().is_none_or(|w| w == have))
        })
    }

    /// Whether a recorded ref satisfies `required_refs` (any ref does when
    /// the list is empty; no ref, `None`, satisfies a non-empty list).
    pub fn ref_allowed(&self, name: Option<&str>) -> bool {
        if self.required_refs.is_empty() {
            return true;
        }
        name.is_some_and(|n| self.required_refs.iter().any(|p| p.matches(n)))
    }

    /// Whether a statement's source repository is allowed.
    pub fn repository_allowed(&self, uri: &str) -> bool {
        self.allowed_repositories.is_empty()
            || self
                .allowed_repositories
                .iter()
                .any(|allowed| normalize_repo(allowed) == normalize_repo(uri))
    }
}

/// Repository URIs compare without SLSA's `git+` scheme prefix and a
/// trailing `.git` or `/` (also the form the log's `repository` search
/// indexes, spec/server-api.md).
pub fn normalize_repo(uri: &str) -> &str {
    let uri = uri.strip_prefix("git+").unwrap_or(uri);
    let uri = uri.strip_suffix('/').unwrap_or(uri);
    uri.strip_suffix(".git").unwrap_or(uri)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeasurementRefusal {
    NotEndorsed,
    OutsideWindow,
}
