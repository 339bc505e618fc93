//! The auth service's routes, the state its handlers share, and the JSON answers to
//! requests that never reach a handler (bad bodies, unknown routes, wrong methods).
//!
//! Invariants: every route answers JSON, errors included; bodies above [`MAX_BODY_BYTES`]
//! are refused before they are parsed.

use crate::{admin, error::ApiError, limits::Limits, login, me, store::UserStore};
use actix_web::{
    error::{JsonPayloadError, PayloadError},
    web, HttpRequest, HttpResponse, ResponseError,
};
use mom_catalog::Catalog;
use mom_common::token::TokenKeys;
use serde_json::json;
use std::time::Duration;

/// Largest request body accepted; credentials are tiny, so anything bigger is abuse or a mistake.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Shared by all workers.
pub struct AppState {
    pub store: UserStore,
    pub keys: TokenKeys,
    pub token_lifetime: Duration,
    /// A hash of a throwaway password, verified against when the user is unknown so that a
    /// login for a missing user costs as much as one with a wrong password. Otherwise response
    /// times would tell which user names exist.
    pub dummy_hash: String,
    /// Where user records (role, generation, `tokens_after`) live for the whole cluster.
    pub catalog: Catalog,
    pub limits: Limits,
    pub open_registration: bool,
}

impl AppState {
    /// The current ZooKeeper session.
    pub fn zk(&self) -> zookeeper_client::Client {
        self.catalog.zookeeper()
    }
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// Registers the routes, and the JSON extractor settings they rely on.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(MAX_BODY_BYTES)
            .error_handler(json_error),
    )
    .service(resource("/health").route(web::get().to(health)))
    .service(resource("/auth/register").route(web::post().to(login::register)))
    .service(resource("/auth/login").route(web::post().to(login::login)))
    .service(resource("/auth/whoami").route(web::get().to(me::whoami)))
    .service(resource("/auth/refresh").route(web::post().to(me::refresh)))
    .service(resource("/auth/revoke").route(web::post().to(me::revoke)))
    .service(
        resource("/auth/users")
            .route(web::get().to(admin::list))
            .route(web::post().to(admin::create)),
    )
    .service(resource("/auth/users/{name}").route(web::delete().to(admin::delete)))
    .service(resource("/auth/users/{name}/role").route(web::put().to(admin::set_role)))
    .service(resource("/auth/users/{name}/password").route(web::put().to(admin::set_password)));
}

/// Turns actix's plain-text body errors into the API's JSON errors.
fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::OverflowKnownLength { .. }
        | JsonPayloadError::Overflow { .. }
        | JsonPayloadError::Payload(PayloadError::Overflow) => ApiError::PayloadTooLarge(format!(
            "request body is larger than {MAX_BODY_BYTES} bytes"
        )),
        // Clients get one status for every unusable body rather than actix's 415 for this case.
        JsonPayloadError::ContentType => ApiError::BadRequest(
            "request body must be JSON (Content-Type: application/json)".into(),
        ),
        JsonPayloadError::Deserialize(e) => ApiError::BadRequest(format!("invalid JSON body: {e}")),
        other => ApiError::BadRequest(format!("unreadable request body: {other}")),
    };
    api.into()
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::NotFound {
        method: req.method().to_string(),
        path: req.path().to_owned(),
    }
    .error_response()
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    ApiError::MethodNotAllowed(req.method().to_string()).error_response()
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}
