//! `POST /auth/register` and `POST /auth/login`: the routes anyone may call.
//!
//! Invariants:
//! - Throttling is decided before any Argon2 work (see [`crate::limits`]).
//! - A login for an unknown user, a deleted user and a wrong password answer alike, and the
//!   first two cost a verification too, so neither answers nor timing tell which names exist.
//! - A token is only issued from the user's current ZooKeeper record: its generation, and an
//!   `iat` its `tokens_after` accepts.

use crate::{error::ApiError, http::AppState, password, tokens, users};
use actix_web::{web, HttpRequest, HttpResponse};
use mom_catalog::access::{self, Role};
use serde::Deserialize;
use serde_json::json;

/// Body of register and login. No `Debug`, so the password cannot end up in a log by accident.
#[derive(Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// `{username, password}` → `201 {"username"}`.
pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    if !state.open_registration {
        return Err(ApiError::RegistrationClosed);
    }
    state
        .limits
        .registration_from(state.limits.client_address(&req))?;
    let Credentials { username, password } = body.into_inner();
    users::create(&state, &username, password, Role::User).await?;
    Ok(HttpResponse::Created().json(json!({ "username": username })))
}

/// `{username, password}` → `200 {"token", "token_type", "expires_in", "role"}`.
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let address = state.limits.client_address(&req);
    let Credentials { username, password } = body.into_inner();
    if let Err(throttled) = state.limits.login_from(address) {
        tracing::info!(%address, "login throttled for the address");
        return Err(throttled.into());
    }
    if let Err(throttled) = state.limits.login_as(&username) {
        tracing::info!(%username, %address, "login throttled for the user name");
        return Err(throttled.into());
    }
    // No stored password can be this long, so skip the expensive hash for such a request.
    if password.chars().count() > password::MAX_PASSWORD_CHARS {
        return Err(ApiError::BadCredentials);
    }

    let checker = state.clone();
    let name = username.clone();
    let matches = web::block(move || -> Result<bool, ApiError> {
        // The lookup holds the database lock; the slow verification below does not.
        let stored = checker.store.password_hash(&name)?;
        Ok(match stored {
            Some(hash) => password::verify(&password, &hash),
            None => {
                password::verify(&password, &checker.dummy_hash);
                false
            }
        })
    })
    .await??;
    if !matches {
        tracing::info!(%username, %address, "login refused");
        return Err(ApiError::BadCredentials);
    }
    let Some(record) = access::read_user(&state.zk(), &username).await? else {
        tracing::info!(%username, "login refused: the user was deleted");
        return Err(ApiError::BadCredentials);
    };
    tracing::info!(%username, role = %record.role, "login");
    Ok(tokens::token_response(&state, &username, &record))
}
