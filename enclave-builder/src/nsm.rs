//! Attestation through an `Nsm` trait with two backends: the real `/dev/nsm`
//! (`nitro`, via `aws-nitro-enclaves-nsm-api`) and the library's simulated
//! NSM loaded from a dev-CA directory (`simulated`). Both put the build's
//! DSSE public key in the document's `public_key`, so the document vouches
//! for the key that signs the statement's envelope.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use attestlog::nitro::sim::{AttestationRequest, SimulatedNsm};
use aws_nitro_enclaves_nsm_api::api::{Request, Response};
use serde_bytes::ByteBuf;

use crate::error::BuildError;

/// Something that signs attestation documents over `user_data` and
/// `public_key`.
pub trait Nsm {
    /// The backend's name, recorded in the statement.
    fn name(&self) -> &'static str;
    /// An attestation document (COSE_Sign1 bytes) with `user_data` and
    /// `public_key` (each at most [`MAX_USER_DATA`] bytes).
    fn attest(&self, user_data: &[u8], public_key: &[u8]) -> Result<Vec<u8>, BuildError>;
}

/// The simulated NSM with fixed PCRs.
pub struct SimulatedBackend {
    nsm: SimulatedNsm,
    pcrs: BTreeMap<u8, Vec<u8>>,
}

impl SimulatedBackend {
    /// Loads the dev CA written by `enclave-builder dev-ca init`.
    pub fn load(dev_ca: &Path, pcrs: BTreeMap<u8, Vec<u8>>) -> Result<Self, BuildError> {
        let nsm = SimulatedNsm::load(dev_ca)
            .map_err(|e| BuildError::Attestation(format!("dev CA {}: {e}", dev_ca.display())))?;
        Ok(SimulatedBackend { nsm, pcrs })
    }
}

impl Nsm for SimulatedBackend {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn attest(&self, user_data: &[u8], public_key: &[u8]) -> Result<Vec<u8>, BuildError> {
        check_sizes(user_data, public_key)?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| BuildError::Attestation(e.to_string()))?
            .as_millis() as u64;
        let req = AttestationRequest {
            user_data: Some(user_data.to_vec()),
            nonce: None,
            public_key: Some(public_key.to_vec()),
        };
        self.nsm
            .attest(&req, &self.pcrs, now_ms)
            .map_err(|e| BuildError::Attestation(e.to_string()))
    }
}

/// The NSM's limit on `user_data`, and on `public_key` too (AWS's CDDL:
/// `bstr .size (1..1024)`).
pub const MAX_USER_DATA: usize = 1024;

fn check_sizes(user_data: &[u8], public_key: &[u8]) -> Result<(), BuildError> {
    for (name, value) in [("user_data", user_data), ("public_key", public_key)] {
        if value.len() > MAX_USER_DATA {
            return Err(BuildError::Attestation(format!(
                "{name} is {} bytes, over the NSM's {MAX_USER_DATA}",
                value.len()
            )));
        }
    }
    if public_key.is_empty() {
        return Err(BuildError::Attestation("public_key is empty".into()));
    }
    Ok(())
}

/// The request the nitro backend sends: user_data and the build's public
/// key, no nonce.
pub fn attestation_request(user_data: &[u8], public_key: &[u8]) -> Result<Request, BuildError> {
    check_sizes(user_data, public_key)?;
    Ok(Request::Attestation {
        user_data: Some(ByteBuf::from(user_data.to_vec())),
        nonce: None,
        public_key: Some(ByteBuf::from(public_key.to_vec())),
    })
}

/// The real Nitro Secure Module at `/dev/nsm`; works only inside an enclave.
pub struct NitroBackend;

impl Nsm for NitroBackend {
    fn name(&self) -> &'static str {
        "nitro"
    }

    fn attest(&self, user_data: &[u8], public_key: &[u8]) -> Result<Vec<u8>, BuildError> {
        use aws_nitro_enclaves_nsm_api::driver::{nsm_exit, nsm_init, nsm_process_request};
        let request = attestation_request(user_data, public_key)?;
        let fd = nsm_init();
        if fd < 0 {
            return Err(BuildError::Attestation(
                "cannot open /dev/nsm (not inside a Nitro Enclave?)".into(),
            ));
        }
        let response = nsm_process_request(fd, request);
        nsm_exit(fd);
        match response {
            Response::Attestation { document } => Ok(document),
            Response::Error(code) => Err(BuildError::Attestation(format!("NSM error {code:?}"))),
            other => Err(BuildError::Attestation(format!(
                "unexpected NSM response {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nitro_request_encodes_as_the_nsm_expects() {
        // The driver sends serde's externally tagged CBOR:
        // {"Attestation": {"user_data": h'..', "nonce": null, "public_key": h'..'}}
        let req = attestation_request(&[0xab; 48], &[0xcd; 44]).unwrap();
        let mut bytes = Vec::new();
        ciborium::into_writer(&req, &mut bytes).unwrap();
        let mut want = vec![0xa1, 0x6b];
        want.extend_from_slice(b"Attestation");
        want.push(0xa3);
        want.push(0x69);
        want.extend_from_slice(b"user_data");
        want.extend_from_slice(&[0x58, 48]);
        want.extend_from_slice(&[0xab; 48]);
        want.push(0x65);
        want.extend_from_slice(b"nonce");
        want.push(0xf6);
        want.push(0x6a);
        want.extend_from_slice(b"public_key");
        want.extend_from_slice(&[0x58, 44]);
        want.extend_from_slice(&[0xcd; 44]);
        assert_eq!(bytes, want);
    }

    #[test]
    fn nitro_request_refuses_oversized_user_data_or_key() {
        let key = [1u8; 44];
        assert!(attestation_request(&[0; MAX_USER_DATA], &key).is_ok());
        assert!(attestation_request(&[0; 48], &[0; MAX_USER_DATA]).is_ok());
        for (user_data, key) in [
            (&[0; MAX_USER_DATA + 1][..], &key[..]),
            (&[0; 48][..], &[0; MAX_USER_DATA + 1][..]),
            (&[0; 48][..], &[][..]),
        ] {
            assert_eq!(
                attestation_request(user_data, key).unwrap_err().code(),
                "attestation"
            );
        }
    }

    #[test]
    fn nitro_backend_fails_cleanly_outside_an_enclave() {
        if Path::new("/dev/nsm").exists() {
            return;
        }
        let err = NitroBackend.attest(b"x", &[1; 44]).unwrap_err();
        assert!(err.to_string().contains("/dev/nsm"), "{err}");
    }
}
