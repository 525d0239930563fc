//! `enclave-builder dev-ca init`: a simulated NSM root for development.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use attestlog::nitro::sim::SimulatedNsm;

use crate::error::BuildError;

/// Creates the simulated NSM state in `dir` (keys 0600) and returns the
/// instructions for trusting it.
pub fn init(dir: &Path) -> Result<String, BuildError> {
    if dir.join("root.pem").exists() {
        return Err(BuildError::Attestation(format!(
            "{} already holds a dev CA; refusing to overwrite it",
            dir.display()
        )));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| BuildError::Attestation(e.to_string()))?
        .as_secs();
    let nsm = SimulatedNsm::generate(now).map_err(|e| BuildError::Attestation(e.to_string()))?;
    nsm.save(dir)
        .map_err(|e| BuildError::Attestation(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let root = std::fs::canonicalize(dir.join("root.pem")).unwrap_or(dir.join("root.pem"));
    Ok(format!(
        "dev CA created in {dir} (private keys mode 0600; never give it to a build)\n\
         This root is for development only. To trust it:\n  \
         log server:  attestlog-server --trust-root {root}\n  \
         policy:      [trust]\n               extra_roots = [\"{root}\"]\n\
         Endorse the builder's PCRs with `enclave-builder measure`.",
        dir = dir.display(),
        root = root.display()
    ))
}
