//! `--publish github|oci` on `host`, and `enclave-builder publish` to retry
//! a publish later from the files in `--out`.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use enclave_builder::publish::github::{GithubTarget, DEFAULT_API, DEFAULT_UPLOADS};
use enclave_builder::publish::{self, PublishError, Target};
use enclave_builder::BuildError;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PublishKind {
    Github,
    Oci,
}

#[derive(Args, Clone)]
pub(crate) struct PublishArgs {
    /// After the build, publish each artifact and its bundle (repeatable).
    /// A failed publish keeps them in --out; `enclave-builder publish` retries.
    #[arg(long = "publish", value_enum)]
    publish: Vec<PublishKind>,
    /// GitHub repository OWNER/NAME whose release gets the assets.
    #[arg(long = "github-repo", alias = "github", value_name = "OWNER/NAME")]
    github_repo: Option<String>,
    /// The release's tag; the release is created if missing.
    #[arg(long = "release-tag")]
    release_tag: Option<String>,
    /// File holding the GitHub token (mode 0600 or stricter); default: $GITHUB_TOKEN.
    #[arg(long = "github-token-file")]
    github_token_file: Option<PathBuf>,
    /// GitHub REST API base.
    #[arg(long = "github-api", default_value = DEFAULT_API)]
    github_api: String,
    /// GitHub uploads base (the release's upload_url must be on it).
    #[arg(long = "github-uploads", default_value = DEFAULT_UPLOADS)]
    github_uploads: String,
    /// REGISTRY/REPO:TAG for the artifact; its bundle becomes a referrer.
    /// With several artifacts, each goes to TAG-<artifact name>.
    #[arg(long = "oci-ref", alias = "oci", value_name = "REGISTRY/REPO:TAG")]
    oci_ref: Option<String>,
    /// File holding registry credentials USER:SECRET (mode 0600 or
    /// stricter), sent to the registry's token realm; default: anonymous.
    #[arg(long = "oci-credentials-file")]
    oci_credentials_file: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct PublishCmdArgs {
    /// The artifact a build wrote.
    #[arg(long)]
    artifact: PathBuf,
    /// Its bundle (default: ARTIFACT.attestlog.json).
    #[arg(long)]
    bundle: Option<PathBuf>,
    #[command(flatten)]
    target: PublishArgs,
}

/// The publish targets resolved from the command line (token read, names
/// checked) before anything is built; `infer` takes the targets from which
/// options are given when --publish is absent (the `publish` subcommand).
pub(crate) struct Targets {
    github: Option<Target>,
    oci: Option<attestlog::oci::Reference>,
    oci_credentials: Option<attestlog::oci::Credentials>,
}

impl PublishArgs {
    pub(crate) fn resolve(&self, infer: bool) -> Result<Targets, PublishError> {
        let mut kinds = self.publish.clone();
        if infer && kinds.is_empty() {
            if self.github_repo.is_some() {
                kinds.push(PublishKind::Github);
            }
            if self.oci_ref.is_some() {
                kinds.push(PublishKind::Oci);
            }
            if kinds.is_empty() {
                return Err(PublishError::Target(
                    "give --github OWNER/NAME --release-tag TAG or --oci REGISTRY/REPO:TAG".into(),
                ));
            }
        }
        let mut targets = Targets {
            github: None,
            oci: None,
            oci_credentials: None,
        };
        if kinds.contains(&PublishKind::Github) {
            let (Some(repo), Some(tag)) = (&self.github_repo, &self.release_tag) else {
                return Err(PublishError::Target(
                    "--publish github needs --github-repo OWNER/NAME and --release-tag TAG".into(),
                ));
            };
            let token = match &self.github_token_file {
                Some(path) => read_token_file(path)?,
                None => std::env::var("GITHUB_TOKEN").map_err(|_| {
                    PublishError::Token("set GITHUB_TOKEN or give --github-token-file".into())
                })?,
            };
            targets.github = Some(Target::Github(GithubTarget::new(
                &self.github_api,
                &self.github_uploads,
                repo,
                tag,
                token.trim().to_string(),
            )?));
        }
        if kinds.contains(&PublishKind::Oci) {
            let r = self.oci_ref.clone().ok_or_else(|| {
                PublishError::Target("--publish oci needs --oci-ref REGISTRY/REPO:TAG".into())
            })?;
            let parsed = attestlog::oci::Reference::parse(&r)?;
            if parsed.tag.is_none() || parsed.digest.is_some() {
                return Err(PublishError::Target(format!(
                    "--oci-ref {r:?}: give REGISTRY/REPO:TAG (a tag, no digest)"
                )));
            }
            targets.oci = Some(parsed);
            if let Some(path) = &self.oci_credentials_file {
                targets.oci_credentials =
                    Some(attestlog::oci::Credentials::parse(&read_token_file(path)?)?);
            }
        }
        Ok(targets)
    }
}

impl PublishArgs {
    /// Whether `--publish` was given.
    pub(crate) fn requested(&self) -> bool {
        !self.publish.is_empty()
    }

    /// Webhook builds (`--webhook-listen`): the targets for a pushed tag.
    /// The tag names the release (GitHub) and the image (OCI), so
    /// `--release-tag` must be absent and `--oci-ref` is REGISTRY/REPO
    /// without a tag. Called once at start with a stand-in tag, so bad
    /// settings stop the host before it serves.
    pub(crate) fn for_tag(&self, tag: &str) -> Result<Targets, PublishError> {
        if self.release_tag.is_some() {
            return Err(PublishError::Target(
                "with --webhook-listen the pushed tag is the release tag: drop --release-tag"
                    .into(),
            ));
        }
        let mut args = self.clone();
        args.release_tag = Some(tag.to_string());
        if let Some(r) = &self.oci_ref {
            let last = r.rsplit('/').next().unwrap_or_default();
            if !r.contains('/') || last.contains(':') || r.contains('@') {
                return Err(PublishError::Target(format!(
                    "with --webhook-listen give --oci-ref REGISTRY/REPO (no tag): the pushed tag names the image, not {r:?}"
                )));
            }
            args.oci_ref = Some(format!("{r}:{tag}"));
        }
        args.resolve(false)
    }
}

impl Targets {
    /// Publishes every (artifact, bundle) pair to every target. On failure
    /// the error says the files are kept and how to retry.
    pub(crate) fn publish_all(&self, written: &[(PathBuf, PathBuf)]) -> Result<(), BuildError> {
        for (artifact, bundle) in written {
            let result = self.publish_one(artifact, bundle, written.len() > 1);
            if let Err(e) = result {
                // The operator's log; the error itself is the one stderr line.
                println!(
                    "publish failed; the build is kept: {} and {} (retry: enclave-builder publish --artifact {} ...)",
                    artifact.display(),
                    bundle.display(),
                    artifact.display()
                );
                return Err(BuildError::Publish(e));
            }
        }
        Ok(())
    }

    fn publish_one(
        &self,
        artifact: &Path,
        bundle: &Path,
        several: bool,
    ) -> Result<(), PublishError> {
        if let Some(gh) = &self.github {
            for line in publish::publish(gh, artifact, bundle)? {
                println!("{line}");
            }
        }
        if let Some(r) = &self.oci {
            let mut reference = r.clone();
            if several {
                let name: String = artifact
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default()
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || "._-".contains(c) {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                let tag = format!("{}-{name}", reference.tag.unwrap_or_default());
                reference = attestlog::oci::Reference::parse(&format!(
                    "{}/{}:{tag}",
                    reference.registry, reference.repository
                ))?;
            }
            let target = Target::Oci {
                reference,
                credentials: self.oci_credentials.clone(),
            };
            for line in publish::publish(&target, artifact, bundle)? {
                println!("{line}");
            }
        }
        Ok(())
    }
}

/// A secret file's contents (GitHub token, registry credentials); refused
/// when group or others may read it.
fn read_token_file(path: &Path) -> Result<String, PublishError> {
    use std::os::unix::fs::MetadataExt;
    let io = |source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mode = file.metadata().map_err(io)?.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PublishError::TokenFileMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut token = String::new();
    file.take(4096).read_to_string(&mut token).map_err(io)?;
    Ok(token)
}

/// `enclave-builder publish`: publish files a build already wrote.
pub(crate) fn run_publish(args: PublishCmdArgs) -> Result<(), BuildError> {
    let targets = args.target.resolve(true)?;
    let bundle = args
        .bundle
        .unwrap_or_else(|| publish::bundle_path(&args.artifact));
    targets.publish_all(&[(args.artifact, bundle)])
}
