//! The claim a log entry makes: "these artifacts were built from this commit
//! by an enclave image with these measurements".
//!
//! An entry pairs an in-toto Statement (SLSA Provenance v1) with the Nitro
//! attestation document whose `user_data` commits to the statement's exact
//! bytes. Holding the entry bytes alone is enough to check the whole claim
//! offline; the log adds only the evidence of when it was seen.

mod entry;
mod statement;

pub use entry::{
    claim_id, entry_claim_id, statement_user_data, verify_entry, Entry, VerifiedClaim,
    CLAIM_ID_DOMAIN, ENTRY_MAGIC, MAX_ENTRY_SIZE, USER_DATA_DOMAIN,
};
pub use statement::{
    canonical_json, is_full_commit_id, is_recordable_ref, BuildDefinition, SourceDependency,
    SourceRef, Statement, StatementParams, Subject, SubmoduleDependency, BUILD_TYPE, BUILD_TYPE_V1,
    MAX_REF_NAME, PROVENANCE_TYPE, STATEMENT_TYPE,
};

use crate::nitro::NitroError;

/// Why an entry or a statement was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("entry is {0} bytes, over the 65,535-byte limit")]
    EntryTooLarge(usize),
    #[error("entry does not start with the attestlog v1 magic")]
    EntryMagic,
    #[error("entry is truncated or has an empty part")]
    EntryTruncated,
    #[error("entry has {0} trailing bytes after the attestation")]
    EntryTrailingBytes(usize),
    #[error("statement is not valid JSON: {0}")]
    StatementJson(String),
    #[error("statement is not in canonical JSON form")]
    StatementNotCanonical,
    #[error("statement field {0} is missing or malformed")]
    StatementField(&'static str),
    #[error("attestation: {0}")]
    Attestation(#[from] NitroError),
    #[error("attestation user_data does not commit to the statement")]
    UserDataMismatch,
}

impl ClaimError {
    /// A stable, machine-readable name for the failed check.
    pub fn code(&self) -> &'static str {
        match self {
            ClaimError::EntryTooLarge(_) => "entry_too_large",
            ClaimError::EntryMagic
            | ClaimError::EntryTruncated
            | ClaimError::EntryTrailingBytes(_) => "bad_entry_encoding",
            ClaimError::StatementJson(_)
            | ClaimError::StatementNotCanonical
            | ClaimError::StatementField(_) => "bad_statement",
            ClaimError::Attestation(e) => e.code(),
            ClaimError::UserDataMismatch => "user_data_mismatch",
        }
    }
}
