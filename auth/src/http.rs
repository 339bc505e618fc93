//! HTTP handlers of the auth service and their JSON error responses.

use crate::{
    password::{self, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS},
    store::{Inserted, StoreError, UserStore},
};
use actix_web::{
    error::{BlockingError, JsonPayloadError, PayloadError},
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse, ResponseError,
};
use mom_common::{
    names::{validate_name, NameError},
    token::{TokenError, TokenKeys},
};
use serde::Deserialize;
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
}

/// Every error the API answers with; rendered as `{"error": "<message>"}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    InvalidUsername(#[from] NameError),
    #[error("password must be at least {} characters", MIN_PASSWORD_CHARS)]
    PasswordTooShort,
    #[error("password must be at most {} characters", MAX_PASSWORD_CHARS)]
    PasswordTooLong,
    #[error("user {0} already exists")]
    UserExists(String),
    /// Deliberately the same for an unknown user and a wrong password.
    #[error("invalid username or password")]
    BadCredentials,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("no route for {method} {path}")]
    NotFound { method: String, path: String },
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
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

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidUsername(_)
            | ApiError::PasswordTooShort
            | ApiError::PasswordTooLong
            | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UserExists(_) => StatusCode::CONFLICT,
            ApiError::BadCredentials | ApiError::Token(_) => StatusCode::UNAUTHORIZED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "request failed");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Token(_)) {
            // RFC 6750: a 401 for a protected resource names the scheme it wants.
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(json!({ "error": message }))
    }
}

/// Body of register and login. No `Debug`, so the password cannot end up in a log by accident.
#[derive(Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Registers the routes, and the JSON extractor settings they rely on.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(MAX_BODY_BYTES)
            .error_handler(json_error),
    )
    .service(
        web::resource("/health")
            .route(web::get().to(health))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/auth/register")
            .route(web::post().to(register))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/auth/login")
            .route(web::post().to(login))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/auth/whoami")
            .route(web::get().to(whoami))
            .default_service(web::to(method_not_allowed)),
    );
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

fn check_password(password: &str) -> Result<(), ApiError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(ApiError::PasswordTooShort);
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(ApiError::PasswordTooLong);
    }
    Ok(())
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

async fn register(
    state: web::Data<AppState>,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let Credentials { username, password } = body.into_inner();
    validate_name("username", &username)?;
    check_password(&password)?;

    let name = username.clone();
    let outcome = web::block(move || -> Result<Inserted, ApiError> {
        let hash = password::hash(&password)
            .map_err(|e| ApiError::Internal(format!("hashing password: {e}")))?;
        Ok(state.store.insert(&name, &hash, now_ms())?)
    })
    .await??;

    match outcome {
        Inserted::Created => {
            tracing::info!(%username, "user registered");
            Ok(HttpResponse::Created().json(json!({ "username": username })))
        }
        Inserted::AlreadyExists => Err(ApiError::UserExists(username)),
    }
}

async fn login(
    state: web::Data<AppState>,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let Credentials { username, password } = body.into_inner();
    // No stored password can be this long, so skip the expensive hash for such a request.
    if password.chars().count() > MAX_PASSWORD_CHARS {
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
        tracing::info!(%username, "login refused");
        return Err(ApiError::BadCredentials);
    }
    let token = state.keys.issue(&username, state.token_lifetime);
    tracing::info!(%username, "login");
    Ok(HttpResponse::Ok().json(json!({
        "token": token,
        "token_type": "Bearer",
        "expires_in": state.token_lifetime.as_secs(),
    })))
}

/// Lets a client (or the gateway's operator) check what a token stands for.
async fn whoami(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let claims = state.keys.verify_bearer(header)?;
    Ok(HttpResponse::Ok().json(json!({ "username": claims.sub })))
}
