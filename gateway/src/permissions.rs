//! Permission checks of the REST API, and the `/permissions` resource where owners and
//! admins grant other users `configure`, `write` and `read` (rules in `mom_catalog::access`).
//!
//! Every handler that touches an exchange, queue or topic calls [`require`] before it acts;
//! the nodes check `write` and `read` again for the user a call is made for.

use crate::openapi::{self, Routes};
use crate::{caller::Caller, error::ApiError, AppState};
use actix_web::{http::Method, web, HttpResponse};
use mom_catalog::access::{self, Grant, Permission, ResourceKind};
use serde::Deserialize;
use serde_json::json;

type Reply = Result<HttpResponse, ApiError>;

/// Refuses unless the caller may exercise `permission` on `kind`/`name`: 404 when there is
/// no such resource (as for its owner), 403 when there is.
pub async fn require(
    state: &AppState,
    caller: &Caller,
    kind: ResourceKind,
    name: &str,
    permission: Permission,
) -> Result<(), ApiError> {
    if state
        .access
        .allows(&caller.user, kind, name, permission)
        .await?
    {
        return Ok(());
    }
    refusal(
        state,
        caller,
        kind,
        name,
        &format!("no {permission} permission"),
    )
    .await
}

async fn refusal(
    state: &AppState,
    caller: &Caller,
    kind: ResourceKind,
    name: &str,
    what: &str,
) -> Result<(), ApiError> {
    if !state.catalog.resource_exists(kind, name).await? {
        return Err(ApiError::NotFound(format!(
            "{kind} {name:?} does not exist"
        )));
    }
    Err(ApiError::Forbidden(format!(
        "user {:?} has {what} on {kind} {name:?}",
        caller.user
    )))
}

/// Refuses (404 or 403, as [`require`]) unless the caller may do anything at all with the
/// resource.
pub async fn require_any(
    state: &AppState,
    caller: &Caller,
    kind: ResourceKind,
    name: &str,
) -> Result<(), ApiError> {
    if state.access.view().sees(&caller.user, kind, name) {
        return Ok(());
    }
    state.access.reload().await?;
    if state.access.view().sees(&caller.user, kind, name) {
        return Ok(());
    }
    refusal(state, caller, kind, name, "no permission").await
}

/// The items among `items` the caller may see (listings show only those). A resource whose
/// owner the cache does not know yet was probably declared a moment ago (perhaps by the
/// caller): then the cache is brought up to date first.
pub async fn visible<T>(
    state: &AppState,
    caller: &Caller,
    kind: ResourceKind,
    items: Vec<T>,
    name: impl Fn(&T) -> &str,
) -> Result<Vec<T>, ApiError> {
    let unknown_owner = {
        let view = state.access.view();
        items
            .iter()
            .any(|item| view.owner(kind, name(item)).is_none())
    };
    if unknown_owner {
        state.access.reload().await?;
    }
    let view = state.access.view();
    Ok(items
        .into_iter()
        .filter(|item| view.sees(&caller.user, kind, name(item)))
        .collect())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// The user who gets the permissions.
    user: String,
    #[schema(value_type = ResourceKind)]
    kind: String,
    /// A name, or a pattern with the wildcards `*` and `?`.
    pattern: String,
    #[schema(min_items = 1)]
    permissions: Vec<Permission>,
}

fn check_pattern(pattern: &str) -> Result<(), ApiError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*' | '?');
    if pattern.is_empty()
        || pattern.len() > mom_common::names::MAX_NAME_LEN
        || !pattern.chars().all(allowed)
    {
        return Err(ApiError::BadRequest(format!(
            "pattern must be 1 to {} characters of letters, digits, '.', '_', '-' and the \
             wildcards '*' and '?' (got {pattern:?})",
            mom_common::names::MAX_NAME_LEN
        )));
    }
    Ok(())
}

fn grant_json(id: &str, grant: &Grant) -> serde_json::Value {
    json!({
        "id": id,
        "user": grant.user,
        "kind": grant.kind,
        "pattern": grant.pattern,
        "permissions": grant.permissions,
        "granted_by": grant.granted_by,
    })
}

/// `POST /permissions`: an admin grants on any name or pattern; an owner grants on a name it
/// owns, or on a pattern, which then reaches only the resources that owner owns.
#[utoipa::path(
    post,
    path = "/permissions",
    tag = "permissions",
    request_body = GrantBody,
    responses(
        (status = 201, description = "Granted", body = openapi::GrantReply),
        (status = 403, description = "A name the caller does not own (admins may grant anything)"),
        (status = 404, description = "No such user"),
    ),
)]
pub async fn grant(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<GrantBody>,
) -> Reply {
    let body = body.into_inner();
    let kind: ResourceKind = body.kind.parse().map_err(ApiError::BadRequest)?;
    check_pattern(&body.pattern)?;
    if body.permissions.is_empty() {
        return Err(ApiError::BadRequest(
            "permissions must name at least one of configure, write, read".into(),
        ));
    }
    if state.access.user(&body.user).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "user {:?} does not exist",
            body.user
        )));
    }
    let admin = state.access.view().is_admin(&caller.user);
    let is_pattern = body.pattern.contains(['*', '?']);
    if !admin && !is_pattern {
        let owner = state.catalog.owner(kind, &body.pattern).await?;
        if owner.as_deref() != Some(caller.user.as_str()) {
            return Err(ApiError::Forbidden(format!(
                "only the owner of {kind} {:?} or an admin may grant on it",
                body.pattern
            )));
        }
    }
    let mut permissions = body.permissions;
    permissions.sort();
    permissions.dedup();
    let grant = Grant {
        user: body.user,
        kind,
        pattern: body.pattern,
        permissions,
        granted_by: caller.user.clone(),
    };
    let id = access::add_grant(&state.catalog.zookeeper(), &grant).await?;
    tracing::info!(%id, granted_by = %grant.granted_by, user = %grant.user, %kind, pattern = %grant.pattern, "permission granted");
    Ok(HttpResponse::Created().json(grant_json(&id, &grant)))
}

/// `GET /permissions`: every grant for an admin; the ones a user gave or got otherwise.
#[utoipa::path(
    get,
    path = "/permissions",
    operation_id = "list_grants",
    tag = "permissions",
    responses((status = 200, description = "The grants the caller gave or got (all, for an admin)", body = openapi::GrantList)),
)]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Reply {
    let admin = state.access.view().is_admin(&caller.user);
    let grants: Vec<_> = access::list_grants(&state.catalog.zookeeper())
        .await?
        .into_iter()
        .filter(|(_, g)| admin || g.user == caller.user || g.granted_by == caller.user)
        .map(|(id, g)| grant_json(&id, &g))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "permissions": grants })))
}

/// `DELETE /permissions/{id}`: by its granter, its grantee (giving it up) or an admin.
#[utoipa::path(
    delete,
    path = "/permissions/{id}",
    operation_id = "revoke_grant",
    tag = "permissions",
    params(("id" = String, Path, description = "The grant's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "The caller is neither its granter, its grantee nor an admin"),
        (status = 404, description = "No such grant"),
    ),
)]
pub async fn revoke(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> Reply {
    let zk = state.catalog.zookeeper();
    let not_found = || ApiError::NotFound(format!("no permission grant {:?}", id.as_str()));
    if !id.starts_with("g-") || id.contains('/') {
        return Err(not_found());
    }
    let grant = access::read_grant(&zk, &id).await?.ok_or_else(not_found)?;
    let admin = state.access.view().is_admin(&caller.user);
    if !admin && grant.granted_by != caller.user && grant.user != caller.user {
        return Err(ApiError::Forbidden(
            "only its granter, its grantee or an admin may revoke a grant".into(),
        ));
    }
    if !access::delete_grant(&zk, &id).await? {
        return Err(not_found());
    }
    tracing::info!(id = %id.as_str(), by = %caller.user, "permission revoked");
    Ok(HttpResponse::NoContent().finish())
}

pub fn routes<R: Routes>(r: &mut R) {
    r.add(Method::POST, "/permissions", grant)
        .add(Method::GET, "/permissions", list)
        .add(Method::DELETE, "/permissions/{id}", revoke);
}
