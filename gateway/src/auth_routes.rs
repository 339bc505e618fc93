//! The `/auth/*` routes: the gateway passes each to the auth service (see [`crate::auth_proxy`])
//! so that clients need only the gateway's address. Each route has a handler of its own here,
//! so that it is registered and documented like every other route.
//!
//! The bodies are the auth service's (auth/src/login.rs, me.rs, admin.rs); the types below
//! only describe them for the OpenAPI document, as the gateway passes the bytes on unread.
//! The auth service answers the same `{"error": string}` errors as the gateway.

use crate::openapi::Routes;
use crate::{error::ApiError, AppState};
use actix_web::{http::Method, web, HttpRequest, HttpResponse};
use mom_catalog::access::Role;
use serde::Serialize;
use utoipa::ToSchema;

type Reply = Result<HttpResponse, ApiError>;

/// Body of register and login.
#[derive(Serialize, ToSchema)]
pub struct Credentials {
    pub username: String,
    /// 8 to 1024 characters, not only spaces.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct Username {
    pub username: String,
}

/// A token for the `Authorization: Bearer` header.
#[derive(Serialize, ToSchema)]
pub struct Token {
    pub token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    pub role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct User {
    pub username: String,
    pub role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    /// Every user, by name.
    pub users: Vec<User>,
}

#[derive(Serialize, ToSchema)]
pub struct NewUser {
    pub username: String,
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
    /// `user` unless given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

#[derive(Serialize, ToSchema)]
pub struct NewRole {
    pub role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct NewPassword {
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
}

/// Registers an account with the role `user` (while registration is open).
#[utoipa::path(
    post,
    path = "/auth/register",
    tag = "auth",
    security(()),
    request_body = Credentials,
    responses(
        (status = 201, description = "Registered", body = Username),
        (status = 400, description = "An invalid user name, or a password against the rules"),
        (status = 403, description = "Registration is closed; an admin creates users"),
        (status = 409, description = "The name is taken"),
        (status = 429, description = "Too many registrations from this address",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
pub async fn register(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> Reply {
    crate::auth_proxy(state, request, body).await
}

/// Logs in: a token for the user.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    security(()),
    request_body = Credentials,
    responses(
        (status = 200, description = "Logged in", body = Token),
        (status = 401, description = "Wrong user name or password"),
        (status = 429, description = "Too many attempts for this address or user",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
)]
pub async fn login(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> Reply {
    crate::auth_proxy(state, request, body).await
}

/// The caller's name and role.
#[utoipa::path(
    get,
    path = "/auth/whoami",
    tag = "auth",
    responses((status = 200, description = "The caller", body = User)),
)]
pub async fn whoami(state: web::Data<AppState>, request: HttpRequest) -> Reply {
    crate::auth_proxy(state, request, web::Bytes::new()).await
}

/// A fresh token for the caller, as login answers.
#[utoipa::path(
    post,
    path = "/auth/refresh",
    tag = "auth",
    responses((status = 200, description = "A fresh token", body = Token)),
)]
pub async fn refresh(state: web::Data<AppState>, request: HttpRequest) -> Reply {
    crate::auth_proxy(state, request, web::Bytes::new()).await
}

/// Voids every token of the caller issued so far, this one included.
#[utoipa::path(
    post,
    path = "/auth/revoke",
    operation_id = "revoke_tokens",
    tag = "auth",
    responses((status = 204, description = "Revoked")),
)]
pub async fn revoke(state: web::Data<AppState>, request: HttpRequest) -> Reply {
    crate::auth_proxy(state, request, web::Bytes::new()).await
}

/// (admin) Every user.
#[utoipa::path(
    get,
    path = "/auth/users",
    tag = "auth",
    responses(
        (status = 200, description = "The users", body = UserList),
        (status = 403, description = "The caller is not an admin"),
    ),
)]
pub async fn list_users(state: web::Data<AppState>, request: HttpRequest) -> Reply {
    crate::auth_proxy(state, request, web::Bytes::new()).await
}

/// (admin) Creates a user, also while registration is closed.
#[utoipa::path(
    post,
    path = "/auth/users",
    tag = "auth",
    request_body = NewUser,
    responses(
        (status = 201, description = "Created", body = User),
        (status = 400, description = "An invalid user name, or a password against the rules"),
        (status = 403, description = "The caller is not an admin"),
        (status = 409, description = "The name is taken"),
    ),
)]
pub async fn create_user(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Reply {
    crate::auth_proxy(state, request, body).await
}

/// (admin) Deletes a user: its tokens, grants and ownerships go.
#[utoipa::path(
    delete,
    path = "/auth/users/{name}",
    tag = "auth",
    params(("name" = String, Path, description = "User name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "An invalid name, or the caller itself (another admin can)"),
        (status = 403, description = "The caller is not an admin"),
        (status = 404, description = "No such user"),
    ),
)]
pub async fn delete_user(state: web::Data<AppState>, request: HttpRequest) -> Reply {
    crate::auth_proxy(state, request, web::Bytes::new()).await
}

/// (admin) Changes a user's role.
#[utoipa::path(
    put,
    path = "/auth/users/{name}/role",
    tag = "auth",
    params(("name" = String, Path, description = "User name")),
    request_body = NewRole,
    responses(
        (status = 200, description = "Changed", body = User),
        (status = 400, description = "An invalid name, or an admin demoting itself"),
        (status = 403, description = "The caller is not an admin"),
        (status = 404, description = "No such user"),
    ),
)]
pub async fn set_role(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> Reply {
    crate::auth_proxy(state, request, body).await
}

/// (admin) Resets a user's password; the user's earlier tokens stop working.
#[utoipa::path(
    put,
    path = "/auth/users/{name}/password",
    tag = "auth",
    params(("name" = String, Path, description = "User name")),
    request_body = NewPassword,
    responses(
        (status = 200, description = "Reset", body = Username),
        (status = 400, description = "An invalid name, or a password against the rules"),
        (status = 403, description = "The caller is not an admin"),
        (status = 404, description = "No such user"),
    ),
)]
pub async fn set_password(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Reply {
    crate::auth_proxy(state, request, body).await
}

/// The auth service's routes, as the gateway serves them. A path or method the auth service
/// does not serve is not passed on: the gateway answers 404 itself.
pub fn routes<R: Routes>(r: &mut R) {
    r.add(Method::POST, "/auth/register", register)
        .add(Method::POST, "/auth/login", login)
        .add(Method::GET, "/auth/whoami", whoami)
        .add(Method::POST, "/auth/refresh", refresh)
        .add(Method::POST, "/auth/revoke", revoke)
        .add(Method::GET, "/auth/users", list_users)
        .add(Method::POST, "/auth/users", create_user)
        .add(Method::DELETE, "/auth/users/{name}", delete_user)
        .add(Method::PUT, "/auth/users/{name}/role", set_role)
        .add(Method::PUT, "/auth/users/{name}/password", set_password);
}
