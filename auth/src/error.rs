//! Every error the auth API answers with, and how each is rendered.
//!
//! Invariants: every answer is JSON `{"error": "<message>"}`; internal details (SQLite,
//! ZooKeeper) go to the log only; a 401 names the `Bearer` scheme where a token was at
//! fault; a 429 always carries `Retry-After` in whole seconds, at least 1.

use crate::{limits::Throttled, password::PasswordRuleError, store::StoreError};
use actix_web::{
    error::BlockingError,
    http::{header, StatusCode},
    HttpResponse, ResponseError,
};
use mom_catalog::{CatalogError, ErrorKind};
use mom_common::{names::NameError, token::TokenError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    InvalidUsername(#[from] NameError),
    #[error(transparent)]
    Password(#[from] PasswordRuleError),
    #[error("{0}")]
    BadRequest(String),
    #[error("user {0} already exists")]
    UserExists(String),
    #[error("user {0} does not exist")]
    NoSuchUser(String),
    /// Deliberately the same for an unknown user, a deleted one and a wrong password.
    #[error("invalid username or password")]
    BadCredentials,
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A well-signed token whose user was deleted, or that was revoked.
    #[error("token is no longer valid")]
    TokenVoid,
    #[error("registration is closed; an admin creates users")]
    RegistrationClosed,
    #[error("this needs the admin role")]
    NotAdmin,
    #[error("too many attempts; retry in {} seconds", .0.retry_after_secs())]
    TooManyRequests(#[from] Throttled),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("no route for {method} {path}")]
    NotFound { method: String, path: String },
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    /// ZooKeeper cannot be reached; the detail goes to the log only.
    #[error("user directory unavailable: {0}")]
    Unavailable(String),
    /// The detail goes to the log only; clients learn nothing about the internals.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<BlockingError> for ApiError {
    fn from(e: BlockingError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e.kind() {
            ErrorKind::Unavailable => ApiError::Unavailable(e.to_string()),
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidUsername(_) | ApiError::Password(_) | ApiError::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::UserExists(_) => StatusCode::CONFLICT,
            ApiError::NoSuchUser(_) | ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::BadCredentials | ApiError::Token(_) | ApiError::TokenVoid => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::RegistrationClosed | ApiError::NotAdmin => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "request failed");
                "internal error".to_owned()
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(%detail, "zookeeper unavailable");
                "user directory unavailable; try again later".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = HttpResponse::build(self.status_code());
        match self {
            // RFC 6750: a 401 for a protected resource names the scheme it wants.
            ApiError::Token(_) | ApiError::TokenVoid => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::TooManyRequests(throttled) => {
                response.insert_header((header::RETRY_AFTER, throttled.retry_after_secs()));
            }
            _ => {}
        }
        response.json(json!({ "error": message }))
    }
}
