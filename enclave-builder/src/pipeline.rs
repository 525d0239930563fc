//! The build pipeline: source, the ref that contains the commit, the build
//! definition, sandboxed build, hashes, statement, attestation, log,
//! bundles. Nothing reaches the log unless every step before it succeeded,
//! and nothing is written to the output directory unless the log's answer
//! verified. The statement records where the build definition came from
//! and which ref contains the commit (buildType v2). Each build generates a
//! fresh Ed25519 key in memory, has the NSM attest its public half
//! (`public_key`) beside the statement (`user_data`), signs the statement
//! as a DSSE envelope with it and drops it before anything leaves: the key
//! is never written anywhere, and the envelope goes into the bundles.

use std::path::{Path, PathBuf};
use std::time::Instant;

use attestlog::bundle::{Bundle, BUNDLE_SUFFIX};
use attestlog::claim::{
    statement_user_data, Entry, SourceDependency, Statement, StatementParams, Subject,
};
use attestlog::dsse::StatementSigner;
use serde_json::json;
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config;
use crate::error::BuildError;
use crate::nsm::Nsm;
use crate::refs::{self, RefSource};
use crate::sandbox::{self, SandboxConfig, SandboxKind, BUILD_MOUNT};
use crate::source::{self, SourceRequest, SubmoduleBundles};
use crate::submit;

/// The builder id recorded by default.
pub const DEFAULT_BUILDER_ID: &str = "https://attestlog.dev/enclave-builder/v1";

/// Everything a build needs besides the NSM.
#[derive(Clone, Debug)]
pub struct BuildRequest {
    pub source: SourceRequest,
    /// How the ref containing the commit is learned.
    pub refs: RefSource,
    /// Command-line override of the repository's build definition (only
    /// `enclave-builder build`; recorded as an override).
    pub cmd: Option<String>,
    pub outputs: Vec<String>,
    pub log_url: String,
    pub log_key: String,
    pub sandbox: SandboxConfig,
    pub out_dir: PathBuf,
    pub builder_id: String,
    /// Paths the build must never see (dev CA, keys).
    pub hidden: Vec<PathBuf>,
}

/// One published artifact.
#[derive(Clone, Debug)]
pub struct Published {
    pub artifact: PathBuf,
    pub bundle: PathBuf,
    pub sha256: [u8; 32],
}

/// Wall-clock time of each phase, in seconds.
#[derive(Clone, Debug, Default)]
pub struct Timings {
    pub clone: f64,
    pub build: f64,
    pub attest: f64,
    pub log: f64,
}

/// A successful build.
#[derive(Clone, Debug)]
pub struct BuildOutcome {
    pub commit: String,
    pub index: u64,
    pub published: Vec<Published>,
    pub timings: Timings,
}

fn now_rfc3339() -> Result<String, BuildError> {
    let now = OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&Rfc3339)
        .map_err(|e| BuildError::Statement(e.to_string()))
}

/// Bytes read and written at a time when an output is hashed and staged.
const OUTPUT_CHUNK: usize = 64 * 1024;

/// Resolves a declared output inside the build directory and, streaming,
/// hashes it and copies it to `staged` (outside the build directory). An
/// output over `limit` bytes is refused (`output_too_large`) without being
/// read past the limit. Returns the digest and the size.
fn hash_output(
    src: &Path,
    name: &str,
    staged: &Path,
    limit: u64,
) -> Result<([u8; 32], u64), BuildError> {
    use std::io::{Read, Write};
    let rel = Path::new(name);
    if rel.is_absolute() || name.is_empty() {
        return Err(BuildError::BadOutput(name.to_string()));
    }
    let path = src.join(rel);
    if std::fs::symlink_metadata(&path).is_err() {
        return Err(BuildError::MissingOutput(name.to_string()));
    }
    let root = std::fs::canonicalize(src).map_err(|e| BuildError::io(src, e))?;
    let real = std::fs::canonicalize(&path).map_err(|_| BuildError::MissingOutput(name.into()))?;
    if !real.starts_with(&root) || !real.is_file() {
        return Err(BuildError::BadOutput(name.to_string()));
    }
    let too_large = || BuildError::OutputTooLarge(format!("{name} is over {limit} bytes"));
    let file = std::fs::File::open(&real).map_err(|e| BuildError::io(&real, e))?;
    let len = file.metadata().map_err(|e| BuildError::io(&real, e))?.len();
    if len > limit {
        return Err(too_large());
    }
    let mut reader = file.take(limit.saturating_add(1));
    let mut out = std::fs::File::create(staged).map_err(|e| BuildError::io(staged, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; OUTPUT_CHUNK];
    let mut size = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| BuildError::io(&real, e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        if size > limit {
            return Err(too_large());
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| BuildError::io(staged, e))?;
    }
    Ok((hasher.finalize().into(), size))
}

/// Runs the whole pipeline, talking to the log directly.
pub fn build(req: &BuildRequest, nsm: &dyn Nsm) -> Result<BuildOutcome, BuildError> {
    let log = submit::HttpLog {
        url: req.log_url.clone(),
    };
    build_with(req, nsm, &log)
}

/// Runs the whole pipeline, submitting through `log` (direct HTTP or the
/// host relay); the answer is verified against `req.log_key` either way.
pub fn build_with(
    req: &BuildRequest,
    nsm: &dyn Nsm,
    log: &dyn submit::LogClient,
) -> Result<BuildOutcome, BuildError> {
    build_with_submodules(req, nsm, log, None)
}

/// [`build_with`], with submodules taken only from `submodules` when given
/// (the enclave: see [`source::fetch_with_submodule_bundles`]).
pub fn build_with_submodules(
    req: &BuildRequest,
    nsm: &dyn Nsm,
    log: &dyn submit::LogClient,
    submodules: Option<&SubmoduleBundles>,
) -> Result<BuildOutcome, BuildError> {
    let key = submit::parse_key(&req.log_key)?;
    let mut timings = Timings::default();
    let work = tempfile::Builder::new()
        .prefix("enclave-builder-")
        .tempdir()
        .map_err(|e| BuildError::io(std::env::temp_dir(), e))?;
    let src = work.path().join("src");

    let t = Instant::now();
    let checked = source::fetch_with_submodule_bundles(&req.source, &src, submodules)?;
    timings.clone = t.elapsed().as_secs_f64();
    tracing::info!(commit = %checked.commit, uri = %checked.uri, "source checked out");

    let source_ref = match &req.refs {
        RefSource::Advertised { allow_unreferenced } => refs::source_ref(
            &src,
            &checked.commit,
            req.source.git_ref.as_deref(),
            &req.source.net_config,
            source::is_local(&req.source.repo),
            *allow_unreferenced,
        )?,
        RefSource::Given(r) => r.clone(),
    };
    tracing::info!(source_ref = ?source_ref, "ref containing the commit");

    let (build_config, build_definition) = config::load(&src, req.cmd.as_deref(), &req.outputs)?;
    sandbox::check_hidden(&src, &req.hidden)?;
    let home = match req.sandbox.kind {
        SandboxKind::Bwrap => BUILD_MOUNT.to_string(),
        SandboxKind::None => src.display().to_string(),
    };
    let mut env = sandbox::base_env(checked.commit_time, &home);
    env.extend(build_config.env.clone());

    let started_on = now_rfc3339()?;
    let t = Instant::now();
    tracing::info!(command = ?build_config.command, sandbox = ?req.sandbox.kind, "building");
    sandbox::run(
        &req.sandbox,
        &src,
        &build_config.command,
        &env,
        &work.path().join("build.log"),
    )?;
    timings.build = t.elapsed().as_secs_f64();
    let finished_on = now_rfc3339()?;

    let staging = work.path().join("outputs");
    std::fs::create_dir(&staging).map_err(|e| BuildError::io(&staging, e))?;
    let (per_output, all_outputs) = (
        sandbox::mib(req.sandbox.output_mb),
        sandbox::mib(req.sandbox.outputs_total_mb),
    );
    let mut artifacts = Vec::new();
    let mut total = 0u64;
    for (i, o) in build_config.outputs.iter().enumerate() {
        let staged = staging.join(i.to_string());
        let (digest, size) = hash_output(&src, o, &staged, per_output)?;
        total = total.saturating_add(size);
        if total > all_outputs {
            return Err(BuildError::OutputTooLarge(format!(
                "the outputs together are over {all_outputs} bytes"
            )));
        }
        let mode = std::fs::metadata(src.join(o)).map(|m| m.permissions());
        artifacts.push((o.clone(), staged, digest, mode.ok()));
    }
    let subjects = artifacts
        .iter()
        .map(|(name, _, digest, _)| Subject {
            name: name.clone(),
            sha256: *digest,
        })
        .collect();
    let (_, statement) = Statement::build(&StatementParams {
        subjects,
        source: SourceDependency {
            uri: checked.uri.clone(),
            git_commit: checked.commit.clone(),
        },
        source_ref,
        build_definition,
        builder_id: req.builder_id.clone(),
        builder_version: env!("CARGO_PKG_VERSION").to_string(),
        command: build_config.command.clone(),
        started_on,
        finished_on,
        internal_parameters: json!({
            "sandbox": req.sandbox,
            "env": build_config.env,
            "outputs": build_config.outputs,
            "nsm": nsm.name(),
        }),
        submodules: checked.submodules.clone(),
    })
    .map_err(|e| BuildError::Statement(e.to_string()))?;

    let t = Instant::now();
    let signer = StatementSigner::generate();
    let public_key = signer
        .public_key_der()
        .map_err(|e| BuildError::Attestation(e.to_string()))?;
    let document = nsm.attest(&statement_user_data(&statement), &public_key)?;
    // Consumes (and so zeroizes) the key: it signs this statement only.
    let envelope = signer.sign_statement(&statement);
    timings.attest = t.elapsed().as_secs_f64();
    let entry =
        Entry::encode(&statement, &document).map_err(|e| BuildError::Statement(e.to_string()))?;

    std::fs::create_dir_all(&req.out_dir).map_err(|e| BuildError::io(&req.out_dir, e))?;
    let t = Instant::now();
    let proof = submit::submit_with(log, &key, &entry)?;
    timings.log = t.elapsed().as_secs_f64();
    let index = proof.index;
    let bundle = Bundle {
        entry,
        proof,
        dsse_envelope: Some(envelope),
    };
    let bundle_json = bundle.to_json();

    let mut published = Vec::new();
    for (name, staged, digest, mode) in artifacts {
        let base = config::base_name(&name)?;
        let artifact = req.out_dir.join(&base);
        let bundle_path = req.out_dir.join(format!("{base}{BUNDLE_SUFFIX}"));
        std::fs::copy(&staged, &artifact).map_err(|e| BuildError::io(&artifact, e))?;
        if let Some(mode) = mode {
            std::fs::set_permissions(&artifact, mode).map_err(|e| BuildError::io(&artifact, e))?;
        }
        std::fs::write(&bundle_path, &bundle_json).map_err(|e| BuildError::io(&bundle_path, e))?;
        published.push(Published {
            artifact,
            bundle: bundle_path,
            sha256: digest,
        });
    }
    Ok(BuildOutcome {
        commit: checked.commit,
        index,
        published,
        timings,
    })
}
