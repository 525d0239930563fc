//! The verdict on "artifact A was built by enclave image PCR0-2 from commit
//! CT": every check a user makes before installing, offline, from a bundle.
//!
//! The checks run in a fixed order and the first failure is the verdict, so
//! each refusal names exactly one check:
//! 1. the artifact's SHA-256 is a subject of the statement (and, when the
//!    caller pins a commit with [`BundleVerifier::expect_commit`], the
//!    statement names that commit);
//! 2. the attestation's `user_data` commits to the statement, and the
//!    bundle's DSSE envelope (when present; required under `require_dsse`)
//!    carries exactly the statement bytes as an in-toto payload;
//! 3. the attestation chain and signature verify at the document's own time,
//!    and the envelope's signature verifies under the attested `public_key`;
//! 4. the PCRs are endorsed by the policy and not revoked (and debug mode and
//!    the source repository are allowed), the build definition came from the
//!    repository (or the policy allows an override or an unrecorded origin),
//!    and a ref of the repository contains the commit (or the policy allows an
//!    unreferenced one) that matches `required_refs`;
//! 5. the inclusion proof leads to the checkpoint's root;
//! 6. the checkpoint is signed by a trusted log key and carries the witness
//!    quorum.

use time::OffsetDateTime;

use crate::bundle::Bundle;
use crate::claim::{
    statement_user_data, BuildDefinition, ClaimError, Entry, SourceRef, Statement, Subject,
};
use crate::dsse::DsseError;
use crate::nitro::{AttestationDocument, NitroError, NitroVerifier, VerifyTime};
use crate::policy::{MeasurementRefusal, Policy};
use crate::tlog::checkpoint::{
    verify_checkpoint, verify_checkpoint_for_origin, Checkpoint, CheckpointError,
};
use crate::tlog::merkle::{leaf_hash, verify_inclusion, ProofError};

/// What a successful verification established.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub subject: Subject,
    pub statement: Statement,
    pub document: AttestationDocument,
    pub measurement: String,
    pub index: u64,
    pub checkpoint: Checkpoint,
    /// Names of the witnesses whose cosignatures verified.
    pub cosigners: Vec<String>,
    /// The keyid of the attested key the DSSE envelope verified under; `None`
    /// for a v1 bundle (no envelope).
    pub dsse_keyid: Option<String>,
}

/// The one check that failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("entry: {0}")]
    Entry(ClaimError),
    #[error("artifact: its sha256 {0} is not a subject of the statement")]
    ArtifactNotInSubjects(String),
    #[error("statement: {0}")]
    Statement(ClaimError),
    #[error("attestation: {0}")]
    Attestation(NitroError),
    #[error("source: the statement names commit {found}, not the expected {expected}")]
    CommitMismatch { expected: String, found: String },
    #[error("binding: attestation user_data does not commit to the statement")]
    UserDataMismatch,
    #[error(
        "dsse: the bundle carries no DSSE envelope (a v1 bundle) and the policy sets require_dsse"
    )]
    DsseMissing,
    #[error("dsse: {0}")]
    Dsse(DsseError),
    #[error("policy: debug-mode attestation refused (PCR0-2 are zero)")]
    DebugRefused,
    #[error("policy: measurement revoked: {0}")]
    Revoked(String),
    #[error("policy: PCR0-2 are not an endorsed measurement")]
    NotEndorsed,
    #[error("policy: PCR0-2 match an endorsed measurement outside its validity window")]
    EndorsementExpired,
    #[error("policy: source repository {0} is not allowed")]
    RepositoryNotAllowed(String),
    #[error("policy: the build definition was overridden on the builder's command line, not taken from the repository (allow_build_override is not set)")]
    BuildDefinitionOverride,
    #[error("policy: the statement does not record where its build definition came from or which ref contains the commit (buildType {0:?}; allow_unrecorded_build_definition is not set)")]
    BuildDefinitionUnrecorded(String),
    #[error("policy: no branch or tag of the repository contained the commit; the operator built it anyway (allow_unreferenced_commits is not set)")]
    UnreferencedCommit,
    #[error("policy: ref {0} is not in required_refs")]
    RefNotAllowed(String),
    #[error("checkpoint: {0}")]
    CheckpointBody(CheckpointError),
    #[error("inclusion: {0}")]
    Inclusion(ProofError),
    #[error("checkpoint: no trusted log key for origin {0:?}")]
    UnknownLog(String),
    #[error("checkpoint: {0}")]
    Checkpoint(CheckpointError),
}

impl VerifyError {
    /// A stable, machine-readable name for the failed check.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Entry(e) | VerifyError::Statement(e) => e.code(),
            VerifyError::ArtifactNotInSubjects(_) => "artifact_not_in_subjects",
            VerifyError::Attestation(e) => e.code(),
            VerifyError::CommitMismatch { .. } => "commit_mismatch",
            VerifyError::UserDataMismatch => "user_data_mismatch",
            VerifyError::DsseMissing => "dsse_missing",
            VerifyError::Dsse(e) => e.code(),
            VerifyError::DebugRefused => "debug_refused",
            VerifyError::Revoked(_) => "measurement_revoked",
            VerifyError::NotEndorsed => "measurement_not_endorsed",
            VerifyError::EndorsementExpired => "measurement_outside_window",
            VerifyError::RepositoryNotAllowed(_) => "repository_not_allowed",
            VerifyError::BuildDefinitionOverride => "build_definition_override",
            VerifyError::BuildDefinitionUnrecorded(_) => "build_definition_unrecorded",
            VerifyError::UnreferencedCommit => "unreferenced_commit",
            VerifyError::RefNotAllowed(_) => "ref_not_allowed",
            VerifyError::CheckpointBody(e) | VerifyError::Checkpoint(e) => e.code(),
            VerifyError::Inclusion(_) => "inclusion_proof",
            VerifyError::UnknownLog(_) => "unknown_log",
        }
    }
}

/// Verifies bundles under one policy. Keeps a Nitro chain cache, so reuse
/// it across bundles.
pub struct BundleVerifier {
    policy: Policy,
    nitro: NitroVerifier,
    expected_commit: Option<String>,
}

impl BundleVerifier {
    pub fn new(policy: Policy) -> Self {
        let nitro = NitroVerifier::new(policy.trust_roots.clone());
        BundleVerifier {
            policy,
            nitro,
            expected_commit: None,
        }
    }

    /// Also requires the statement to name `commit` (compared in lowercase):
    /// the user's "built from CT", when the same artifact could have been
    /// built, validly, from another commit.
    pub fn expect_commit(mut self, commit: &str) -> Self {
        self.expected_commit = Some(commit.to_ascii_lowercase());
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Checks the claim that the artifact with SHA-256 `artifact` was built
    /// as the bundle says, and that the log holds the claim.
    pub fn verify(&self, bundle: &Bundle, artifact: &[u8; 32]) -> Result<Verdict, VerifyError> {
        let entry = Entry::decode(&bundle.entry).map_err(VerifyError::Entry)?;
        let statement = Statement::parse(entry.statement).map_err(VerifyError::Statement)?;

        // 1. The artifact is a subject.
        let subject = statement
            .subject_with_digest(artifact)
            .ok_or_else(|| VerifyError::ArtifactNotInSubjects(hex::encode(artifact)))?
            .clone();
        if let Some(expected) = &self.expected_commit {
            if statement.source.git_commit.to_ascii_lowercase() != *expected {
                return Err(VerifyError::CommitMismatch {
                    expected: expected.clone(),
                    found: statement.source.git_commit.clone(),
                });
            }
        }

        // 2. The bindings, read before any crypto so a mismatch names itself.
        let unverified =
            AttestationDocument::parse(entry.attestation).map_err(VerifyError::Attestation)?;
        if unverified.user_data.as_deref() != Some(&statement_user_data(entry.statement)[..]) {
            return Err(VerifyError::UserDataMismatch);
        }
        if let Some(envelope) = &bundle.dsse_envelope {
            envelope
                .check_statement(entry.statement)
                .map_err(VerifyError::Dsse)?;
        } else if self.policy.require_dsse {
            return Err(VerifyError::DsseMissing);
        }

        // 3. The chain and COSE signature, at the document's own timestamp;
        // then the envelope under the key the verified document vouches for.
        let document = self
            .nitro
            .verify(entry.attestation, VerifyTime::DocumentTimestamp)
            .map_err(VerifyError::Attestation)?;
        let dsse_keyid = bundle
            .dsse_envelope
            .as_ref()
            .map(|envelope| envelope.verify(document.public_key.as_deref()))
            .transpose()
            .map_err(VerifyError::Dsse)?;

        // 4. The policy on what was attested.
        let measurement = self.check_policy(&statement, &document)?;

        // 5. Inclusion in the checkpointed tree.
        let checkpoint_body = bundle
            .proof
            .checkpoint
            .split_once("\n\n")
            .map_or(bundle.proof.checkpoint.as_str(), |(body, _)| body);
        let checkpoint = Checkpoint::parse_body(&format!("{checkpoint_body}\n"))
            .map_err(VerifyError::CheckpointBody)?;
        verify_inclusion(
            bundle.proof.index,
            checkpoint.size,
            &leaf_hash(&bundle.entry),
            &bundle.proof.hashes,
            &checkpoint.root_hash,
        )
        .map_err(VerifyError::Inclusion)?;

        // 6. The log's signature and the witnesses. With `log_origin` the
        // policy names the origin and any of its log keys may sign it (the
        // key name equal to the origin is only a SHOULD); without it the
        // origin selects the key named after it.
        let verified = match &self.policy.log_origin {
            Some(origin) => verify_checkpoint_for_origin(
                &bundle.proof.checkpoint,
                origin,
                &self.policy.log_keys,
                &self.policy.witnesses,
                self.policy.witness_quorum,
            ),
            None => {
                let log_key = self
                    .policy
                    .log_keys
                    .iter()
                    .find(|k| k.name() == checkpoint.origin)
                    .ok_or_else(|| VerifyError::UnknownLog(checkpoint.origin.clone()))?;
                verify_checkpoint(
                    &bundle.proof.checkpoint,
                    log_key,
                    &self.policy.witnesses,
                    self.policy.witness_quorum,
                )
            }
        }
        .map_err(VerifyError::Checkpoint)?;

        Ok(Verdict {
            subject,
            statement,
            document,
            measurement,
            index: bundle.proof.index,
            checkpoint: verified.checkpoint,
            cosigners: verified
                .cosigners
                .into_iter()
                .map(|(name, _)| name)
                .collect(),
            dsse_keyid,
        })
    }

    /// Applies the policy to a verified claim; returns the endorsing
    /// measurement's name.
    pub fn check_policy(
        &self,
        statement: &Statement,
        document: &AttestationDocument,
    ) -> Result<String, VerifyError> {
        if document.is_debug() && !self.policy.allow_debug {
            return Err(VerifyError::DebugRefused);
        }
        let pcrs = [0u8, 1, 2].map(|i| document.pcr(i).unwrap_or_default());
        if let Some(revocation) = self.policy.revocation(pcrs) {
            return Err(VerifyError::Revoked(revocation.reason.clone()));
        }
        let at = OffsetDateTime::from_unix_timestamp(document.timestamp_unix() as i64)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let measurement = self.policy.endorsement(pcrs, at).map_err(|r| match r {
            MeasurementRefusal::NotEndorsed => VerifyError::NotEndorsed,
            MeasurementRefusal::OutsideWindow => VerifyError::EndorsementExpired,
        })?;
        if !self.policy.repository_allowed(&statement.source.uri) {
            return Err(VerifyError::RepositoryNotAllowed(
                statement.source.uri.clone(),
            ));
        }
        check_provenance(&self.policy, statement)?;
        Ok(measurement.name.clone())
    }
}

/// The policy on where the build definition came from and which ref
/// contains the commit (`spec/entry.md`, in this order): an override, an
/// unrecorded origin, an unreferenced commit, a ref outside `required_refs`.
pub fn check_provenance(policy: &Policy, statement: &Statement) -> Result<(), VerifyError> {
    match (&statement.build_definition, &statement.source_ref) {
        (Some(BuildDefinition::Override), _) if !policy.allow_build_override => {
            return Err(VerifyError::BuildDefinitionOverride)
        }
        (None, _) | (_, None) if !policy.allow_unrecorded_build_definition => {
            let build_type = statement.json["predicate"]["buildDefinition"]["buildType"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            return Err(VerifyError::BuildDefinitionUnrecorded(build_type));
        }
        _ => {}
    }
    if statement.source_ref == Some(SourceRef::Unreferenced) && !policy.allow_unreferenced_commits {
        return Err(VerifyError::UnreferencedCommit);
    }
    let name = statement.source_ref.as_ref().and_then(SourceRef::name);
    if !policy.ref_allowed(name) {
        return Err(VerifyError::RefNotAllowed(
            name.unwrap_or("(none recorded)").to_string(),
        ));
    }
    Ok(())
}
