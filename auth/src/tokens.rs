//! User tokens as the auth service issues and accepts them.
//!
//! Invariants:
//! - A token is accepted only while its user's ZooKeeper record exists and
//!   `UserRecord::accepts(gen, iat)` holds: a deleted user's tokens and tokens issued before
//!   a revocation or password reset are refused by every route here, as by the gateway.
//! - Voiding tokens sets `tokens_after` to the next second (`now + 1`), so every token issued
//!   up to and including the current second is void, also one issued a moment after the
//!   change by a login that read the record before it.
//! - A token is issued with `iat = max(now, tokens_after)` from the record just read, so a
//!   login or refresh right after a reset or revocation gets a token that stands, and one
//!   that read the record before the change gets one that does not.

use crate::{error::ApiError, http::AppState};
use actix_web::{http::header, HttpRequest, HttpResponse};
use mom_catalog::access::{self, Role, UserRecord};
use mom_common::{
    names::validate_name,
    token::{Claims, USER_AUDIENCE, USER_ISSUER},
};
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The `tokens_after` that voids every token issued so far (see the module invariants).
pub fn void_tokens_until_now(record: &mut UserRecord) {
    record.tokens_after = record.tokens_after.max(now_secs() + 1);
}

/// Who a request comes from, by a token that still stands.
pub struct Caller {
    pub username: String,
    pub record: UserRecord,
}

/// Checks the request's bearer token, then that its user still exists and has not voided it.
pub async fn authenticate(state: &AppState, req: &HttpRequest) -> Result<Caller, ApiError> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let claims = state.keys.verify_bearer(header)?;
    // Only holders of the secret sign tokens, but a name that is no user name could not be
    // looked up safely anyway.
    if validate_name("username", &claims.sub).is_err() {
        return Err(ApiError::TokenVoid);
    }
    match access::read_user(&state.zk(), &claims.sub).await? {
        Some(record) if record.accepts(claims.gen, claims.iat) => Ok(Caller {
            username: claims.sub,
            record,
        }),
        _ => {
            tracing::info!(username = %claims.sub, "refused a token of a deleted user or a voided token");
            Err(ApiError::TokenVoid)
        }
    }
}

/// [`authenticate`], and the caller must be an admin.
pub async fn authenticate_admin(state: &AppState, req: &HttpRequest) -> Result<Caller, ApiError> {
    let caller = authenticate(state, req).await?;
    if caller.record.role != Role::Admin {
        return Err(ApiError::NotAdmin);
    }
    Ok(caller)
}

/// A token for `username` as its record stands now.
pub fn issue(state: &AppState, username: &str, record: &UserRecord) -> String {
    let iat = now_secs().max(record.tokens_after);
    state.keys.issue_claims(&Claims {
        sub: username.to_owned(),
        iat,
        exp: iat.saturating_add(state.token_lifetime.as_secs()),
        iss: USER_ISSUER.to_owned(),
        aud: USER_AUDIENCE.to_owned(),
        gen: record.generation,
    })
}

/// The answer of login and refresh.
pub fn token_response(state: &AppState, username: &str, record: &UserRecord) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "token": issue(state, username, record),
        "token_type": "Bearer",
        "expires_in": state.token_lifetime.as_secs(),
        "role": record.role,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voiding_refuses_this_seconds_tokens_and_the_next_issue_stands() {
        let mut record = UserRecord {
            role: Role::User,
            generation: 9,
            tokens_after: 0,
        };
        let before = now_secs();
        void_tokens_until_now(&mut record);
        assert!(!record.accepts(9, before));
        // What `issue` picks right after the change.
        let iat = now_secs().max(record.tokens_after);
        assert!(record.accepts(9, iat));
        // Never moves back.
        let later = record.tokens_after + 100;
        record.tokens_after = later;
        void_tokens_until_now(&mut record);
        assert_eq!(record.tokens_after, later);
    }
}
