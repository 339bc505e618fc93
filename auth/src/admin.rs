//! The admin routes under `/auth/users`: list, create, delete, change role, reset password.
//!
//! Invariants:
//! - Every route authenticates an admin (401 for a bad or void token, 403 for a non-admin)
//!   before it changes or reveals anything (a malformed body is refused with 400 earlier).
//! - An admin can neither delete nor demote themself, so a cluster cannot lose its last
//!   admin by accident (another admin can still do either).
//! - User names in paths are checked like registered names before they reach ZooKeeper.

use crate::{error::ApiError, http::AppState, tokens, users};
use actix_web::{web, HttpRequest, HttpResponse};
use mom_catalog::access::{self, Role};
use mom_common::names::validate_name;
use serde::Deserialize;
use serde_json::json;

/// No `Debug`: these carry passwords.
#[derive(Deserialize)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    /// `user` unless given.
    #[serde(default)]
    pub role: Option<Role>,
}

#[derive(Deserialize)]
pub struct NewRole {
    pub role: Role,
}

#[derive(Deserialize)]
pub struct NewPassword {
    pub password: String,
}

/// `GET /auth/users` → `200 {"users": [{"username", "role"}]}`, by name.
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    tokens::authenticate_admin(&state, &req).await?;
    let users: Vec<_> = access::list_users(&state.zk())
        .await?
        .into_iter()
        .map(|(username, record)| json!({ "username": username, "role": record.role }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "users": users })))
}

/// `POST /auth/users {username, password, role?}` → `201 {"username", "role"}`, also while
/// registration is closed; `409` if the name is taken.
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<NewUser>,
) -> Result<HttpResponse, ApiError> {
    let admin = tokens::authenticate_admin(&state, &req).await?;
    let NewUser {
        username,
        password,
        role,
    } = body.into_inner();
    let record = users::create(&state, &username, password, role.unwrap_or(Role::User)).await?;
    tracing::info!(admin = %admin.username, %username, "admin created a user");
    Ok(HttpResponse::Created().json(json!({ "username": username, "role": record.role })))
}

/// `DELETE /auth/users/{name}` → `204`; `404` if there is no such user.
pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let admin = tokens::authenticate_admin(&state, &req).await?;
    let username = name.into_inner();
    validate_name("username", &username)?;
    if username == admin.username {
        return Err(ApiError::BadRequest(
            "an admin cannot delete themself; another admin can".into(),
        ));
    }
    users::delete(&state, &username).await?;
    tracing::info!(admin = %admin.username, %username, "admin deleted a user");
    Ok(HttpResponse::NoContent().finish())
}

/// `PUT /auth/users/{name}/role {role}` → `200 {"username", "role"}`.
pub async fn set_role(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Json<NewRole>,
) -> Result<HttpResponse, ApiError> {
    let admin = tokens::authenticate_admin(&state, &req).await?;
    let username = name.into_inner();
    validate_name("username", &username)?;
    let role = body.into_inner().role;
    if username == admin.username && role != Role::Admin {
        return Err(ApiError::BadRequest(
            "an admin cannot demote themself; another admin can".into(),
        ));
    }
    let record = users::set_role(&state, &username, role).await?;
    tracing::info!(admin = %admin.username, %username, %role, "admin changed a role");
    Ok(HttpResponse::Ok().json(json!({ "username": username, "role": record.role })))
}

/// `PUT /auth/users/{name}/password {password}` → `200 {"username"}`; the user's earlier
/// tokens are void.
pub async fn set_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Json<NewPassword>,
) -> Result<HttpResponse, ApiError> {
    let admin = tokens::authenticate_admin(&state, &req).await?;
    let username = name.into_inner();
    validate_name("username", &username)?;
    users::reset_password(&state, &username, body.into_inner().password).await?;
    tracing::info!(admin = %admin.username, %username, "admin reset a password");
    Ok(HttpResponse::Ok().json(json!({ "username": username })))
}
