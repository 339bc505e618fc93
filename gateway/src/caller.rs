//! The authenticated caller of a request.
//!
//! A token is accepted only if it is validly signed for MOM's REST API (issuer, audience,
//! expiry), its user still exists in ZooKeeper with the generation the token names, and the
//! token was issued after the user's last revocation. Deleting a user or resetting a
//! password therefore voids its tokens as soon as the gateway's watch sees it.

use crate::{error::ApiError, AppState};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use mom_common::token::AttachService;

/// Extracting this checks the bearer token; handlers that take it are protected.
#[derive(Clone)]
pub struct Caller {
    pub user: String,
    /// The gateway's service credentials acting for this user, for calls to nodes.
    pub act: AttachService,
}

impl Caller {
    /// The caller an `Authorization` value (`Bearer <token>`) names, if its token holds; for
    /// REST requests and gRPC calls alike.
    pub async fn from_bearer(state: &AppState, header: Option<&str>) -> Result<Caller, ApiError> {
        let claims = state.tokens.verify_bearer(header)?;
        let record = state.access.user(&claims.sub).await?;
        if !record.is_some_and(|r| r.accepts(claims.gen, claims.iat)) {
            return Err(ApiError::Unauthorized(
                "token revoked, or its user no longer exists; log in again".into(),
            ));
        }
        let act = state.credentials.acting_for(&claims.sub)?;
        Ok(Caller {
            user: claims.sub,
            act,
        })
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Caller, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = request.app_data::<web::Data<AppState>>().cloned();
        let header = request
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::Internal("gateway state missing".into()))?;
            Caller::from_bearer(&state, header.as_deref()).await
        })
    }
}
