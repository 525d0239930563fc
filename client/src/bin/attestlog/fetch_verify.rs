//! `attestlog verify --url URL` and `attestlog verify --oci REF`: fetch the
//! artifact and its bundle, then run exactly the checks of `verify --bundle
//! --artifact`. The network is trusted for nothing: downloads are capped
//! and deadlined (`attestlog::download`), and with `--output` the artifact
//! is written beside its destination under a temporary name and renamed
//! into place only after it verified; on any failure it is removed.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use attestlog::bundle::{BUNDLE_SUFFIX, MAX_BUNDLE_SIZE};
use attestlog::download::{self, MAX_ARTIFACT_SIZE};
use attestlog::oci::{self, Reference, Registry};
use attestlog::verify::BundleVerifier;
use clap::Args;

use crate::display::display_safe as safe;
use crate::verify::check;
use crate::Failure;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("remote").args(["url", "oci"])))]
pub struct RemoteArgs {
    /// Download the artifact from URL (http or https, e.g. a GitHub release
    /// asset) and its bundle from URL.attestlog.json, then verify.
    #[arg(long, value_name = "URL", conflicts_with_all = ["bundle", "artifact", "oci"])]
    url: Option<String>,
    /// Pull the artifact from REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:HEX
    /// and verify it against a bundle found among its referrers.
    #[arg(long, value_name = "REF", conflicts_with_all = ["bundle", "artifact"])]
    oci: Option<String>,
    /// With --url or --oci: write the artifact here, only once it verified.
    #[arg(long, requires = "remote")]
    output: Option<PathBuf>,
}

impl RemoteArgs {
    /// Whether this is a fetching verification.
    pub fn is_given(&self) -> bool {
        self.url.is_some() || self.oci.is_some()
    }
}

/// Verifies what `args` names; with `log`, an artifact at `--url` with no
/// bundle beside it is verified from that log instead.
pub fn run(verifier: &BundleVerifier, args: RemoteArgs, log: Option<&str>) -> Result<(), Failure> {
    let mut sink = match &args.output {
        Some(path) => Sink::Staged(Staged::create(path)?),
        None => Sink::Discard,
    };
    match (&args.url, &args.oci) {
        (Some(url), None) => from_url(verifier, url, &mut sink, log)?,
        (None, Some(r)) => from_oci(verifier, r, &mut sink)?,
        // clap refuses both; neither means run() was not called for us.
        _ => return Err(Failure::new("usage", "give one of --url or --oci")),
    }
    if let Sink::Staged(staged) = sink {
        let path = staged.persist()?;
        println!("wrote: {}", safe(&path.display().to_string()));
    }
    Ok(())
}

fn from_url(
    verifier: &BundleVerifier,
    url: &str,
    sink: &mut Sink,
    log: Option<&str>,
) -> Result<(), Failure> {
    let parsed = reqwest::Url::parse(url).map_err(|e| Failure::new("url", e))?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.query().is_some()
        || parsed.fragment().is_some()
    {
        return Err(Failure::new(
            "url",
            "give an http:// or https:// URL with no query or fragment",
        ));
    }
    let mut bundle_url = parsed.clone();
    bundle_url.set_path(&format!("{}{BUNDLE_SUFFIX}", parsed.path()));
    let small = download::client(download::API_TIMEOUT).map_err(fail)?;
    let mut bundle = Vec::new();
    // A missing bundle has its own code, and with --log a fallback.
    let found = match download::get(
        &small,
        bundle_url.as_str(),
        MAX_BUNDLE_SIZE as u64,
        &mut bundle,
    ) {
        Ok(_) => true,
        Err(download::DownloadError::NotFound { .. }) if log.is_some() => false,
        Err(download::DownloadError::NotFound { url }) => {
            return Err(Failure::new(
                "bundle_not_found",
                format!("no bundle beside the artifact: {url} answered 404 (give --log to verify from a log)"),
            ))
        }
        Err(e) => return Err(fail(e)),
    };
    let large = download::client(download::ARTIFACT_TIMEOUT).map_err(fail)?;
    let received = download::get(&large, parsed.as_str(), MAX_ARTIFACT_SIZE, sink).map_err(fail)?;
    sink.finish()?;
    match (found, log) {
        (false, Some(log)) => {
            println!("no bundle beside the artifact; verifying from the log");
            crate::verify::check_from_log(verifier, log, &received.sha256)
        }
        _ => check(verifier, &bundle, &received.sha256),
    }
}

fn from_oci(verifier: &BundleVerifier, text: &str, sink: &mut Sink) -> Result<(), Failure> {
    let reference = Reference::parse(text).map_err(oci_fail)?;
    let registry = Registry::new(&reference).map_err(oci_fail)?;
    let artifact = oci::resolve_artifact(&registry, &reference).map_err(oci_fail)?;
    oci::download_artifact(&registry, &artifact, sink).map_err(oci_fail)?;
    sink.finish()?;
    // download_artifact checked the bytes against the layer's digest.
    let hex_digest = artifact.layer.digest.trim_start_matches("sha256:");
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut digest).map_err(|e| Failure::new("oci_manifest", e))?;
    let candidates = oci::find_bundles(&registry, &artifact.digest).map_err(oci_fail)?;
    let mut first_failure = None;
    for candidate in &candidates {
        match check(verifier, &candidate.bytes, &digest) {
            Ok(()) => {
                println!(
                    "from: {}/{}@{} (bundle in {})",
                    safe(&reference.registry),
                    safe(&reference.repository),
                    artifact.digest,
                    candidate.manifest
                );
                return Ok(());
            }
            Err(f) => {
                first_failure.get_or_insert(f);
            }
        }
    }
    Err(first_failure.unwrap_or_else(|| Failure::new("oci_no_bundle", "no bundle found")))
}

fn fail(e: download::DownloadError) -> Failure {
    Failure::new(e.code(), e)
}

fn oci_fail(e: oci::OciError) -> Failure {
    Failure::new(e.code(), e)
}

/// Where the downloaded artifact goes: nowhere (only hashed) or a staging
/// file beside `--output`.
enum Sink {
    Discard,
    Staged(Staged),
}

impl Sink {
    fn finish(&mut self) -> Result<(), Failure> {
        match self {
            Sink::Discard => Ok(()),
            Sink::Staged(s) => s.file.sync_all().map_err(|e| s.failure(e)),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Discard => Ok(buf.len()),
            Sink::Staged(s) => s.file.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Discard => Ok(()),
            Sink::Staged(s) => s.file.flush(),
        }
    }
}

/// `<dir>/.<name>.attestlog-partial-<pid>`, created exclusively, removed
/// on drop unless [`Staged::persist`] renamed it to its destination.
struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    file: File,
    done: bool,
}

impl Staged {
    fn create(dest: &Path) -> Result<Staged, Failure> {
        let name = dest
            .file_name()
            .ok_or_else(|| Failure::new("output", "--output must name a file"))?;
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = dir.join(format!(
            ".{}.attestlog-partial-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Failure::new("output", format!("cannot create {}: {e}", tmp.display())))?;
        Ok(Staged {
            tmp,
            dest: dest.to_path_buf(),
            file,
            done: false,
        })
    }

    fn failure(&self, e: std::io::Error) -> Failure {
        Failure::new("output", format!("{}: {e}", self.tmp.display()))
    }

    fn persist(mut self) -> Result<PathBuf, Failure> {
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| {
            Failure::new(
                "output",
                format!("cannot rename to {}: {e}", self.dest.display()),
            )
        })?;
        self.done = true;
        Ok(self.dest.clone())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
