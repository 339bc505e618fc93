//! The routes about the caller's own token: `GET /auth/whoami`, `POST /auth/refresh` and
//! `POST /auth/revoke`.
//!
//! Invariants: each needs a token that still stands (see [`crate::tokens`]); a refresh
//! issues from the record as it is now, so it cannot outlive a revocation; after a revoke,
//! no token of the caller issued up to that second stands, the one used for it included.

use crate::{error::ApiError, http::AppState, tokens, users};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

/// → `200 {"username", "role"}`.
pub async fn whoami(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let caller = tokens::authenticate(&state, &req).await?;
    Ok(HttpResponse::Ok().json(json!({
        "username": caller.username,
        "role": caller.record.role,
    })))
}

/// → `200 {"token", "token_type", "expires_in", "role"}`, as a login answers.
pub async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let caller = tokens::authenticate(&state, &req).await?;
    tracing::info!(username = %caller.username, "token refreshed");
    Ok(tokens::token_response(
        &state,
        &caller.username,
        &caller.record,
    ))
}

/// → `204`; every token of the caller issued so far is void.
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let caller = tokens::authenticate(&state, &req).await?;
    users::revoke_tokens(&state, &caller.username)
        .await
        .map_err(|e| match e {
            // Deleted since the token was checked.
            ApiError::NoSuchUser(_) => ApiError::TokenVoid,
            other => other,
        })?;
    tracing::info!(username = %caller.username, "tokens revoked");
    Ok(HttpResponse::NoContent().finish())
}
