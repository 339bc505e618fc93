//! Every failure the REST API reports, as an HTTP status with a JSON `{"error": ...}` body.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use mom_catalog::{CatalogError, ErrorKind};
use mom_common::message::MessageError;
use mom_common::{names::NameError, token::TokenError};

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Understood but refused, e.g. a `mandatory` publish that no queue would receive.
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Internal(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .json(serde_json::json!({ "error": self.to_string() }))
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

/// A message over the limits: 413 for its payload's size, 400 for the rest.
impl From<MessageError> for ApiError {
    fn from(e: MessageError) -> Self {
        match e {
            MessageError::PayloadTooLarge { .. } => ApiError::PayloadTooLarge(e.to_string()),
            _ => ApiError::BadRequest(e.to_string()),
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        ApiError::Unauthorized(e.to_string())
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e.kind() {
            ErrorKind::NotFound => ApiError::NotFound(e.to_string()),
            ErrorKind::Conflict => ApiError::Conflict(e.to_string()),
            ErrorKind::Internal => ApiError::Internal(e.to_string()),
            ErrorKind::Unavailable => ApiError::Unavailable(e.to_string()),
        }
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        let message = status.message().to_owned();
        match status.code() {
            Code::InvalidArgument | Code::OutOfRange => ApiError::BadRequest(message),
            Code::NotFound => ApiError::NotFound(message),
            Code::AlreadyExists | Code::FailedPrecondition => ApiError::Conflict(message),
            Code::PermissionDenied => ApiError::Forbidden(message),
            // The node refused the gateway's own service token: a configuration error
            // (cluster secrets differ), not the user's.
            Code::Unauthenticated => {
                ApiError::Internal(format!("a broker node refused the gateway: {message}"))
            }
            // A node that died or stalled mid-call (transport errors surface as Unknown or
            // Cancelled): the cluster is built to survive that, so it is retried, never a 502.
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Cancelled
            | Code::Aborted => ApiError::Unavailable(format!("broker node unavailable: {message}")),
            _ => ApiError::BadGateway(format!("broker node failed: {message}")),
        }
    }
}

/// The same refusal for a gRPC client (`Consumer.Consume`): the status code closest to the
/// HTTP one, with the same message.
impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        let code = match &e {
            ApiError::BadRequest(_) | ApiError::PayloadTooLarge(_) => tonic::Code::InvalidArgument,
            ApiError::Unauthorized(_) => tonic::Code::Unauthenticated,
            ApiError::Forbidden(_) => tonic::Code::PermissionDenied,
            ApiError::NotFound(_) => tonic::Code::NotFound,
            ApiError::Conflict(_) => tonic::Code::AlreadyExists,
            ApiError::Unprocessable(_) => tonic::Code::FailedPrecondition,
            ApiError::Unavailable(_) | ApiError::BadGateway(_) => tonic::Code::Unavailable,
            ApiError::Internal(_) => tonic::Code::Internal,
        };
        tonic::Status::new(code, e.to_string())
    }
}
