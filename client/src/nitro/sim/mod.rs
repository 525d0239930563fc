//! A software stand-in for the Nitro Secure Module (feature `sim-nsm`).
//!
//! It mirrors AWS's document structure under a locally generated root: root, regional
//! (pathLen 2), zonal (pathLen 1) and instance (pathLen 0) P-384 CAs, and a leaf
//! (CA:false, digitalSignature, valid 3 hours from the timestamp it was issued for). Like a
//! real NSM it signs later documents with the same leaf while the leaf is valid at their
//! timestamp, and issues a new one otherwise. Documents it signs verify only when its root is explicitly trusted, never
//! under [`TrustRoots::aws`].

mod files;
mod payload;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use coset::{iana, CborSerializable, CoseSign1Builder, HeaderBuilder};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P384_SHA384,
};
use time::OffsetDateTime;

use self::files::{io_err, pem_to_der, to_pem, write_file};
use self::payload::encode_payload;
use super::chain::parse_cert;
use super::TrustRoots;

const DAY: i64 = 86_400;
/// Validity of the root, regional, zonal and instance CAs, from `generate`'s `now`.
const CA_LIFETIMES: [i64; 4] = [30 * 365 * DAY, 5 * 365 * DAY, 365 * DAY, 90 * DAY];
/// Leaf lifetime, as on real NSMs.
pub const LEAF_LIFETIME_SECS: u64 = 3 * 3600;
const NAMES: [&str; 4] = ["root", "regional", "zonal", "instance"];

/// Why the simulator failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Key or certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// Signing the document failed.
    #[error("signing failed")]
    Sign,
    /// A time is outside the range certificates can express.
    #[error("time out of range")]
    Time,
    /// Reading or writing the state directory failed.
    #[error("io error on {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A saved state directory is inconsistent or unreadable.
    #[error("invalid saved state: {0}")]
    InvalidState(String),
}

impl SimError {
    /// Stable snake_case code naming the failed step.
    pub fn code(&self) -> &'static str {
        match self {
            SimError::Generate(_) => "generate",
            SimError::Sign => "sign",
            SimError::Time => "time_out_of_range",
            SimError::Io { .. } => "io",
            SimError::InvalidState(_) => "invalid_state",
        }
    }
}

/// What the enclave asks the NSM to embed (each ≤ 1024 bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttestationRequest {
    /// Application data.
    pub user_data: Option<Vec<u8>>,
    /// Freshness nonce.
    pub nonce: Option<Vec<u8>>,
    /// Enclave public key.
    pub public_key: Option<Vec<u8>>,
}

/// A simulated NSM: a CA chain (root first) and its private keys.
pub struct SimulatedNsm {
    /// Random hex id naming the CAs and the module (kept in `id.txt`).
    id: String,
    /// DER of root, regional, zonal, instance.
    certs: Vec<Vec<u8>>,
    /// Keys of root, regional, zonal, instance.
    keys: Vec<KeyPair>,
    /// The current leaf, reused while it is valid at a document's timestamp.
    leaf: Mutex<Option<Arc<Leaf>>>,
}

/// A leaf certificate and its signing key.
struct Leaf {
    der: Vec<u8>,
    signer: EcdsaKeyPair,
    /// Seconds since the epoch, inclusive.
    valid: (u64, u64),
}

fn gen_err(e: impl std::fmt::Display) -> SimError {
    SimError::Generate(e.to_string())
}

fn random_bytes<const N: usize>() -> Result<[u8; N], SimError> {
    let mut out = [0u8; N];
    SystemRandom::new().fill(&mut out).map_err(gen_err)?;
    Ok(out)
}

fn datetime(unix: i64) -> Result<OffsetDateTime, SimError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|_| SimError::Time)
}

/// AWS-like subject for CA `level` (0 = root .. 3 = instance).
fn ca_name(id: &str, level: usize) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::OrganizationName, "attestlog simulator");
    dn.push(DnType::OrganizationalUnitName, "sim-nsm");
    let cn = match level {
        0 => "sim.nitro-enclaves".to_string(),
        1 => format!("{id}.us-east-1.sim.nitro-enclaves"),
        2 => format!("{id}.zonal.us-east-1.sim.nitro-enclaves"),
        _ => format!("i-{id}.us-east-1.sim.nitro-enclaves"),
    };
    dn.push(DnType::CommonName, cn);
    dn
}

/// Parameters of CA `level`; also rebuilt on load to act as the leaf's issuer.
fn ca_params(id: &str, level: usize, from: i64, until: i64) -> Result<CertificateParams, SimError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = ca_name(id, level);
    let path_len = 2u8.saturating_sub(level.saturating_sub(1) as u8);
    p.is_ca = if level == 0 {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::Ca(BasicConstraints::Constrained(path_len))
    };
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    p.use_authority_key_identifier_extension = level > 0;
    p.not_before = datetime(from)?;
    p.not_after = datetime(until)?;
    p.serial_number = Some(SerialNumber::from_slice(&random_bytes::<16>()?));
    Ok(p)
}

impl SimulatedNsm {
    /// Generates a fresh root, regional, zonal and instance CA chain valid from `now_unix`
    /// (minus an hour of clock slack) for 30 years, 5 years, 1 year and 90 days.
    pub fn generate(now_unix: u64) -> Result<Self, SimError> {
        let now = i64::try_from(now_unix).map_err(|_| SimError::Time)?;
        let id = hex::encode(random_bytes::<8>()?);
        let mut certs = Vec::new();
        let mut keys: Vec<KeyPair> = Vec::new();
        let mut issuer_params: Option<CertificateParams> = None;
        for (level, lifetime) in CA_LIFETIMES.iter().enumerate() {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(gen_err)?;
            let until = now.checked_add(*lifetime).ok_or(SimError::Time)?;
            let params = ca_params(&id, level, now.saturating_sub(3600), until)?;
            let cert = match (&issuer_params, keys.last()) {
                (Some(ip), Some(ik)) => params.signed_by(&key, &Issuer::from_params(ip, ik)),
                _ => params.self_signed(&key),
            }
            .map_err(gen_err)?;
            certs.push(cert.der().to_vec());
            keys.push(key);
            issuer_params = Some(params);
        }
        Ok(SimulatedNsm {
            id,
            certs,
            keys,
            leaf: Mutex::new(None),
        })
    }

    /// Writes the state to `dir`: `<name>.pem` certificates (world-readable) and
    /// `<name>.key.pem` PKCS#8 keys created with mode 0600 (never widened then narrowed).
    pub fn save(&self, dir: &Path) -> Result<(), SimError> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        write_file(&dir.join("id.txt"), self.id.as_bytes(), 0o644)?;
        for ((name, der), key) in NAMES.iter().zip(&self.certs).zip(&self.keys) {
            write_file(
                &dir.join(format!("{name}.pem")),
                to_pem(der).as_bytes(),
                0o644,
            )?;
            let key_pem = key.serialize_pem();
            write_file(
                &dir.join(format!("{name}.key.pem")),
                key_pem.as_bytes(),
                0o600,
            )?;
        }
        Ok(())
    }

    /// Reads a state written by [`SimulatedNsm::save`] and checks keys match certificates.
    pub fn load(dir: &Path) -> Result<Self, SimError> {
        let read = |name: String| {
            let path = dir.join(name);
            fs::read_to_string(&path).map_err(|e| io_err(&path, e))
        };
        let id = read("id.txt".into())?.trim().to_string();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SimError::InvalidState("id.txt is not hex".into()));
        }
        let mut certs = Vec::new();
        let mut keys = Vec::new();
        for (level, name) in NAMES.iter().enumerate() {
            let pem = read(format!("{name}.pem"))?;
            let der = pem_to_der(&pem).ok_or_else(|| {
                SimError::InvalidState(format!("{name}.pem is not a PEM certificate"))
            })?;
            let key = KeyPair::from_pem(&read(format!("{name}.key.pem"))?)
                .map_err(|e| SimError::InvalidState(format!("{name}.key.pem: {e}")))?;
            let cert = parse_cert(&der, level)
                .map_err(|e| SimError::InvalidState(format!("{name}.pem: {e}")))?;
            if cert.public_key != key.public_key_raw() {
                return Err(SimError::InvalidState(format!(
                    "{name}.key.pem does not match {name}.pem"
                )));
            }
            if level == 0 {
                TrustRoots::empty()
                    .add_der(der.clone())
                    .map_err(|e| SimError::InvalidState(format!("root.pem: {e}")))?;
            }
            certs.push(der);
            keys.push(key);
        }
        Ok(SimulatedNsm {
            id,
            certs,
            keys,
            leaf: Mutex::new(None),
        })
    }

    /// DER of the simulator's root certificate.
    pub fn root_der(&self) -> &[u8] {
        self.certs.first().map_or(&[], Vec::as_slice)
    }

    /// PEM of the simulator's root certificate.
    pub fn root_pem(&self) -> String {
        to_pem(self.root_der())
    }

    /// Trust roots holding only this simulator's root.
    pub fn trust_roots(&self) -> TrustRoots {
        let mut roots = TrustRoots::empty();
        // generate/load only accept a self-signed P-384 root, so this cannot fail;
        // if it did, the empty set fails closed.
        let _ = roots.add_der(self.root_der().to_vec());
        roots
    }

    /// The module id reported in documents.
    pub fn module_id(&self) -> String {
        format!("i-{}-enc{}", self.id, self.id)
    }

    /// Signs an attestation document for `req` and `pcrs` at `timestamp_ms` with a fresh
    /// leaf valid for 3 hours from the timestamp. Returns untagged COSE_Sign1 bytes.
    pub fn attest(
        &self,
        req: &AttestationRequest,
        pcrs: &BTreeMap<u8, Vec<u8>>,
        timestamp_ms: u64,
    ) -> Result<Vec<u8>, SimError> {
        let leaf = self.leaf_for(timestamp_ms / 1000)?;
        let payload = encode_payload(
            self.module_id(),
            req,
            pcrs,
            timestamp_ms,
            leaf.der.clone(),
            &self.certs,
        )?;
        let signer = &leaf.signer;
        let rng = SystemRandom::new();
        CoseSign1Builder::new()
            .protected(
                HeaderBuilder::new()
                    .algorithm(iana::Algorithm::ES384)
                    .build(),
            )
            .payload(payload)
            .try_create_signature(b"", |tbs| {
                signer
                    .sign(&rng, tbs)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| SimError::Sign)
            })?
            .build()
            .to_vec()
            .map_err(|_| SimError::Sign)
    }

    /// The current leaf if it is valid at `at`, else a new one issued at `at`.
    fn leaf_for(&self, at: u64) -> Result<Arc<Leaf>, SimError> {
        let mut current = self.leaf.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(leaf) = current.as_ref() {
            if (leaf.valid.0..=leaf.valid.1).contains(&at) {
                return Ok(Arc::clone(leaf));
            }
        }
        let (der, key) = self.issue_leaf(at)?;
        let signer =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, key.serialized_der())
                .map_err(|_| SimError::Sign)?;
        let until = at.checked_add(LEAF_LIFETIME_SECS).ok_or(SimError::Time)?;
        let leaf = Arc::new(Leaf {
            der,
            signer,
            valid: (at, until),
        });
        *current = Some(Arc::clone(&leaf));
        Ok(leaf)
    }

    fn issue_leaf(&self, not_before: u64) -> Result<(Vec<u8>, KeyPair), SimError> {
        let from = i64::try_from(not_before).map_err(|_| SimError::Time)?;
        let lifetime = i64::try_from(LEAF_LIFETIME_SECS).map_err(|_| SimError::Time)?;
        let until = from.checked_add(lifetime).ok_or(SimError::Time)?;
        let instance_key = self
            .keys
            .last()
            .ok_or_else(|| SimError::InvalidState("no instance key".into()))?;
        // Only the instance CA's name and key identifier method matter for issuing.
        let issuer_params = ca_params(&self.id, 3, 0, 0)?;
        let issuer = Issuer::from_params(&issuer_params, instance_key);
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "US");
        dn.push(DnType::StateOrProvinceName, "Washington");
        dn.push(DnType::LocalityName, "Seattle");
        dn.push(DnType::OrganizationName, "attestlog simulator");
        dn.push(DnType::OrganizationalUnitName, "sim-nsm");
        dn.push(DnType::CommonName, self.module_id());
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.use_authority_key_identifier_extension = true;
        p.not_before = datetime(from)?;
        p.not_after = datetime(until)?;
        p.serial_number = Some(SerialNumber::from_slice(&random_bytes::<16>()?));
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(gen_err)?;
        let cert = p.signed_by(&key, &issuer).map_err(gen_err)?;
        Ok((cert.der().to_vec(), key))
    }
}
