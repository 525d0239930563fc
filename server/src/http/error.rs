//! Every refusal the API gives: a 4xx (or 5xx) with
//! `{"error": "<stable code>", "message": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use attestlog::claim::ClaimError;

use crate::storage::StorageError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl ToString) -> Self {
        ApiError {
            status,
            code,
            message: message.to_string(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl ToString) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl ToString) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(message: impl ToString) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.code, "message": self.message});
        (self.status, Json(body)).into_response()
    }
}

/// A refused entry: malformed encodings are 400, a well-formed entry that
/// fails a check is 422, and an oversized one is 413.
impl From<ClaimError> for ApiError {
    fn from(e: ClaimError) -> Self {
        let status = match &e {
            ClaimError::EntryTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ClaimError::EntryMagic
            | ClaimError::EntryTruncated
            | ClaimError::EntryTrailingBytes(_)
            | ClaimError::StatementJson(_)
            | ClaimError::StatementNotCanonical
            | ClaimError::StatementField(_) => StatusCode::BAD_REQUEST,
            ClaimError::Attestation(n) if is_encoding(n.code()) => StatusCode::BAD_REQUEST,
            ClaimError::Attestation(_) | ClaimError::UserDataMismatch => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
        };
        ApiError::new(status, e.code(), e)
    }
}

/// Nitro error codes that mean the document is not even well formed.
fn is_encoding(code: &str) -> bool {
    matches!(
        code,
        "too_large"
            | "malformed_cose"
            | "malformed_payload"
            | "missing_field"
            | "invalid_field"
            | "unsupported_algorithm"
            | "malformed_certificate"
            | "tagged_envelope"
            | "unprotected_header"
            | "noncanonical_encoding"
            | "payload_too_large"
    )
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        ApiError::storage(&e)
    }
}

impl ApiError {
    /// The one answer to a storage error, wherever it was met (a read, a
    /// submission's batch, storing a cosigned checkpoint): 503 when the
    /// request may succeed if retried, 500 `internal` for a fault of the
    /// server's own (logged, not shown).
    pub fn storage(e: &StorageError) -> Self {
        match e {
            StorageError::IndexOutOfRange { .. }
            | StorageError::SizeOutOfRange { .. }
            | StorageError::SizesOutOfOrder { .. } => ApiError::bad_request("out_of_range", e),
            StorageError::BadTileWidth(_) => ApiError::not_found(e),
            StorageError::ReadOnly => ApiError::new(StatusCode::FORBIDDEN, "read_only", e),
            StorageError::IntegrationTimeout { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "integration_timeout", e)
            }
            other if other.is_unavailable() => {
                tracing::warn!(error = %other, "storage unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    format!("storage unavailable ({}); retry later", other.code()),
                )
            }
            other => {
                tracing::error!(error = %other, "storage failure");
                ApiError::internal("storage failure")
            }
        }
    }
}

impl From<crate::pool::WorkerLost> for ApiError {
    fn from(e: crate::pool::WorkerLost) -> Self {
        tracing::error!(error = %e, "worker job failed");
        ApiError::internal("worker task failed")
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        tracing::error!(error = %e, "worker task failed");
        ApiError::internal("worker task failed")
    }
}
