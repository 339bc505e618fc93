//! The authenticated caller of a request.

use crate::{error::ApiError, AppState};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use mom_common::token::AttachToken;
use std::future::{ready, Ready};

/// Extracting this checks the bearer token; handlers that take it are protected.
pub struct Caller {
    pub user: String,
    /// The caller's own token, passed on so that nodes can check it too.
    pub token: AttachToken,
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready((|| {
            let state = request
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| ApiError::Internal("gateway state missing".into()))?;
            let header = request
                .headers()
                .get(actix_web::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let claims = state.tokens.verify_bearer(header)?;
            let token = header
                .and_then(|h| h.strip_prefix("Bearer "))
                .unwrap_or_default()
                .trim();
            Ok(Caller {
                user: claims.sub,
                token: AttachToken::new(token)?,
            })
        })())
    }
}
