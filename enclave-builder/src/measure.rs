//! The measurements the simulated backend reports as PCR0-2 (spec/builder.md).
//!
//! Each is a Nitro-style extend of a zeroed register with one domain-tagged
//! SHA-384:
//!
//! ```text
//! PCRn = SHA-384( 48 zero bytes || SHA-384( "attestlog.dev/sim-pcrN/v1" || 0x00 || input_n ) )
//! input_0 = the bytes of the enclave-builder executable
//! input_1 = canonical JSON of the sandbox/runtime configuration
//! input_2 = canonical JSON of the build configuration
//! ```
//! Changing the executable, the sandbox settings or the builder's
//! configuration therefore changes the PCRs a policy has to endorse.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha384};

use crate::error::BuildError;
use crate::sandbox::{bwrap_args, SandboxConfig, SandboxKind};

/// Placeholder for the per-build directory in the measured bwrap profile.
pub const BUILD_DIR_PLACEHOLDER: &str = "@BUILD_DIR@";

/// What the builder is configured with, apart from the sandbox.
#[derive(Clone, Debug)]
pub struct BuilderConfig {
    pub builder_id: String,
    pub log_url: String,
    pub log_key: String,
    pub source: SourceMode,
}

/// Where the source comes from. Measured, because it decides whether the
/// repository URI in the statement was authenticated by the builder itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceMode {
    /// `build`: the builder clones the repository itself.
    Direct,
    /// `enclave --source relay`: the enclave clones the job's `https://` URL
    /// through the host's relay and verifies TLS itself, against
    /// `tls_roots` (a CA file) or, when `None`, the system's roots.
    Relay { tls_roots: Option<PathBuf> },
    /// `enclave --source host-bundle`: the enclave builds the git bundle the
    /// host sent; the commit is verified, the repository URI is the host's word.
    HostBundle,
}

impl SourceMode {
    /// The name in the measured build configuration.
    pub fn name(&self) -> &'static str {
        match self {
            SourceMode::Direct => "direct",
            SourceMode::Relay { .. } => "relay",
            SourceMode::HostBundle => "host-bundle",
        }
    }
}

/// The three measured inputs' canonical forms and the resulting PCRs.
#[derive(Clone, Debug)]
pub struct Measurement {
    pub pcrs: [[u8; 48]; 3],
    pub sandbox_json: String,
    pub build_json: String,
}

fn extend(n: u8, input: &[u8]) -> [u8; 48] {
    let mut inner = Sha384::new();
    inner.update(format!("attestlog.dev/sim-pcr{n}/v1").as_bytes());
    inner.update([0u8]);
    inner.update(input);
    let mut outer = Sha384::new();
    outer.update([0u8; 48]);
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|c| c.is_file())
    })
}

fn sha384_file(path: &Path) -> Result<String, BuildError> {
    let bytes = std::fs::read(path).map_err(|e| BuildError::io(path, e))?;
    Ok(hex::encode(Sha384::digest(&bytes)))
}

/// Canonical JSON of the sandbox/runtime configuration (input_1).
pub fn sandbox_json(sandbox: &SandboxConfig) -> Result<String, BuildError> {
    let (bwrap_sha384, profile) = match sandbox.kind {
        SandboxKind::Bwrap => {
            let bwrap = find_in_path("bwrap")
                .ok_or_else(|| BuildError::Sandbox("bwrap is not on PATH".into()))?;
            (
                Some(sha384_file(&bwrap)?),
                bwrap_args(sandbox, Path::new(BUILD_DIR_PLACEHOLDER), &BTreeMap::new()),
            )
        }
        SandboxKind::None => (None, Vec::new()),
    };
    let value = json!({
        "sandbox": sandbox.kind,
        "timeout_secs": sandbox.timeout_secs,
        "memory_mb": sandbox.memory_mb,
        "pids_max": sandbox.pids_max,
        "tmp_mb": sandbox.tmp_mb,
        "output_mb": sandbox.output_mb,
        "outputs_total_mb": sandbox.outputs_total_mb,
        "cgroup": sandbox.cgroup,
        "bwrap_sha384": bwrap_sha384,
        "bwrap_profile": profile,
    });
    canonical(&value)
}

/// Canonical JSON of the build configuration (input_2).
pub fn build_json(config: &BuilderConfig) -> Result<String, BuildError> {
    let tls_roots = match &config.source {
        SourceMode::Relay {
            tls_roots: Some(file),
        } => Some(sha384_file(file)?),
        _ => None,
    };
    canonical(&json!({
        "builder_id": config.builder_id,
        "log_url": config.log_url,
        "log_key": config.log_key,
        "source": config.source.name(),
        "tls_roots_sha384": tls_roots,
    }))
}

fn canonical(v: &serde_json::Value) -> Result<String, BuildError> {
    let bytes =
        attestlog::claim::canonical_json(v).map_err(|e| BuildError::Statement(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| BuildError::Statement(e.to_string()))
}

/// Measures an executable, a sandbox and a builder configuration.
pub fn measure_with(
    executable: &[u8],
    sandbox: &SandboxConfig,
    config: &BuilderConfig,
) -> Result<Measurement, BuildError> {
    let sandbox_json = sandbox_json(sandbox)?;
    let build_json = build_json(config)?;
    Ok(Measurement {
        pcrs: [
            extend(0, executable),
            extend(1, sandbox_json.as_bytes()),
            extend(2, build_json.as_bytes()),
        ],
        sandbox_json,
        build_json,
    })
}

/// Measures the running executable.
pub fn measure(sandbox: &SandboxConfig, config: &BuilderConfig) -> Result<Measurement, BuildError> {
    let exe = std::env::current_exe().map_err(|e| BuildError::io("/proc/self/exe", e))?;
    let bytes = std::fs::read(&exe).map_err(|e| BuildError::io(&exe, e))?;
    measure_with(&bytes, sandbox, config)
}

/// The 16 PCRs a simulated document carries: PCR0-2 measured, the rest zero.
pub fn pcr_map(m: &Measurement) -> BTreeMap<u8, Vec<u8>> {
    (0u8..16)
        .map(|i| {
            let v = m
                .pcrs
                .get(usize::from(i))
                .map_or(vec![0u8; 48], |p| p.to_vec());
            (i, v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> (SandboxConfig, BuilderConfig) {
        (
            SandboxConfig {
                kind: SandboxKind::None,
                timeout_secs: 60,
                memory_mb: 1024,
                ..SandboxConfig::default()
            },
            BuilderConfig {
                builder_id: "b".into(),
                log_url: "http://l".into(),
                log_key: "k".into(),
                source: SourceMode::Direct,
            },
        )
    }

    #[test]
    fn each_input_moves_its_own_pcr() {
        let (s, b) = cfg();
        let base = measure_with(b"exe", &s, &b).unwrap();
        assert_eq!(base.pcrs, measure_with(b"exe", &s, &b).unwrap().pcrs);
        let exe = measure_with(b"exe2", &s, &b).unwrap();
        assert_ne!(exe.pcrs[0], base.pcrs[0]);
        assert_eq!(exe.pcrs[1..], base.pcrs[1..]);
        let s2 = SandboxConfig {
            timeout_secs: 61,
            ..s.clone()
        };
        let sb = measure_with(b"exe", &s2, &b).unwrap();
        assert_eq!(sb.pcrs[0], base.pcrs[0]);
        assert_ne!(sb.pcrs[1], base.pcrs[1]);
        assert_eq!(sb.pcrs[2], base.pcrs[2]);
        // Every whole-build limit is measured too.
        let limits = [
            SandboxConfig {
                pids_max: 7,
                ..s.clone()
            },
            SandboxConfig {
                tmp_mb: 7,
                ..s.clone()
            },
            SandboxConfig {
                output_mb: 7,
                ..s.clone()
            },
            SandboxConfig {
                outputs_total_mb: 7,
                ..s.clone()
            },
            SandboxConfig {
                cgroup: crate::sandbox::CgroupMode::None,
                ..s.clone()
            },
        ];
        for l in limits {
            let m = measure_with(b"exe", &l, &b).unwrap();
            assert_ne!(m.pcrs[1], base.pcrs[1], "{l:?}");
            assert_eq!(m.pcrs[2], base.pcrs[2]);
        }
        let b2 = BuilderConfig {
            log_key: "k2".into(),
            ..b
        };
        let bc = measure_with(b"exe", &s, &b2).unwrap();
        assert_eq!(bc.pcrs[..2], base.pcrs[..2]);
        assert_ne!(bc.pcrs[2], base.pcrs[2]);
        let modes = [
            SourceMode::HostBundle,
            SourceMode::Relay { tls_roots: None },
        ];
        for source in modes {
            let m = BuilderConfig {
                source,
                ..b2.clone()
            };
            let bm = measure_with(b"exe", &s, &m).unwrap();
            assert_eq!(bm.pcrs[..2], base.pcrs[..2]);
            assert_ne!(bm.pcrs[2], bc.pcrs[2]);
        }
        let roots = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(roots.path(), b"roots").unwrap();
        let pinned = BuilderConfig {
            source: SourceMode::Relay {
                tls_roots: Some(roots.path().to_path_buf()),
            },
            ..b2.clone()
        };
        let system = BuilderConfig {
            source: SourceMode::Relay { tls_roots: None },
            ..b2
        };
        assert_ne!(
            measure_with(b"exe", &s, &pinned).unwrap().pcrs[2],
            measure_with(b"exe", &s, &system).unwrap().pcrs[2]
        );
    }

    #[test]
    fn extend_matches_the_spec_formula() {
        let inner = Sha384::digest(b"attestlog.dev/sim-pcr0/v1\0abc");
        let mut outer = Sha384::new();
        outer.update([0u8; 48]);
        outer.update(inner);
        let want: [u8; 48] = outer.finalize().into();
        assert_eq!(extend(0, b"abc"), want);
    }
}
