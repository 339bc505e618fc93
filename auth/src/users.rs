//! Changes to users that touch both the SQLite table (passwords) and ZooKeeper (records).
//!
//! Invariants:
//! - A user exists for the cluster exactly while its ZooKeeper record does; the SQLite row
//!   only holds the password.
//! - Creating: the SQLite row comes first (its primary key decides races on a name), then
//!   the record with a fresh random generation; if ZooKeeper refuses or fails, the row is
//!   removed again, so no half-created user stays behind.
//! - Deleting: the record goes first, which voids the user's tokens at once; the row after.
//! - Resetting a password: the new hash first, then `tokens_after` moves, so no token issued
//!   with the old password outlives the reset.
//! - At start, rows never published get their record (role user, or admin for the bootstrap
//!   admin), so databases from before ZooKeeper records keep working.

use crate::{error::ApiError, http::AppState, password, store::Inserted, tokens};
use actix_web::web;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use mom_catalog::access::{self, Role, UserRecord};
use mom_common::names::validate_name;
use mom_config::BootstrapAdmin;
use std::time::{SystemTime, UNIX_EPOCH};

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Hashes off the executor.
async fn hash(password: String) -> Result<String, ApiError> {
    web::block(move || password::hash(&password))
        .await?
        .map_err(|e| ApiError::Internal(format!("hashing password: {e}")))
}

/// Creates a user with `role`; `UserExists` if the name is taken.
pub async fn create(
    state: &web::Data<AppState>,
    username: &str,
    password: String,
    role: Role,
) -> Result<UserRecord, ApiError> {
    validate_name("username", username)?;
    password::check(&password)?;
    let hash = hash(password).await?;
    let (db, name) = (state.clone(), username.to_owned());
    let inserted = web::block(move || db.store.insert(&name, &hash, now_ms())).await??;
    if inserted == Inserted::AlreadyExists {
        return Err(ApiError::UserExists(username.to_owned()));
    }
    let record = UserRecord {
        role,
        generation: OsRng.next_u64(),
        tokens_after: 0,
    };
    let published = access::create_user(&state.zk(), username, &record).await;
    if !matches!(published, Ok(true)) {
        remove_row(state, username).await;
    }
    match published {
        Ok(true) => {}
        // A record without a row: only an admin's delete clears such a leftover.
        Ok(false) => return Err(ApiError::UserExists(username.to_owned())),
        Err(e) => return Err(e.into()),
    }
    let (db, name) = (state.clone(), username.to_owned());
    if let Err(e) = web::block(move || db.store.mark_published(&name)).await? {
        // Harmless: the next start finds the record and marks the row then.
        tracing::warn!(%username, error = %e, "cannot mark a user as published");
    }
    tracing::info!(%username, %role, "user created");
    Ok(record)
}

/// Undoes the insert of a creation that ZooKeeper did not complete.
async fn remove_row(state: &web::Data<AppState>, username: &str) {
    let (db, name) = (state.clone(), username.to_owned());
    match web::block(move || db.store.delete(&name)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(%username, error = %e, "cannot undo a user's creation"),
        Err(e) => tracing::error!(%username, error = %e, "cannot undo a user's creation"),
    }
}

/// Deletes a user: record, grants and ownerships, then the password; `NoSuchUser` if
/// neither existed.
pub async fn delete(state: &web::Data<AppState>, username: &str) -> Result<(), ApiError> {
    let had_record = access::delete_user(&state.zk(), username).await?;
    let (db, name) = (state.clone(), username.to_owned());
    let had_row = web::block(move || db.store.delete(&name)).await??;
    if !had_record && !had_row {
        return Err(ApiError::NoSuchUser(username.to_owned()));
    }
    tracing::info!(%username, "user deleted");
    Ok(())
}

/// Changes a user's role.
pub async fn set_role(
    state: &web::Data<AppState>,
    username: &str,
    role: Role,
) -> Result<UserRecord, ApiError> {
    let updated = access::update_user(&state.zk(), username, |r| r.role = role).await?;
    let record = updated.ok_or_else(|| ApiError::NoSuchUser(username.to_owned()))?;
    tracing::info!(%username, %role, "role changed");
    Ok(record)
}

/// Sets a new password and voids every token issued before.
pub async fn reset_password(
    state: &web::Data<AppState>,
    username: &str,
    password: String,
) -> Result<UserRecord, ApiError> {
    password::check(&password)?;
    if access::read_user(&state.zk(), username).await?.is_none() {
        return Err(ApiError::NoSuchUser(username.to_owned()));
    }
    let hash = hash(password).await?;
    let (db, name) = (state.clone(), username.to_owned());
    let changed = web::block(move || db.store.set_password_hash(&name, &hash)).await??;
    if !changed {
        return Err(ApiError::NoSuchUser(username.to_owned()));
    }
    let record = revoke_tokens(state, username).await?;
    tracing::info!(%username, "password reset");
    Ok(record)
}

/// Voids every token of a user issued up to now.
pub async fn revoke_tokens(
    state: &web::Data<AppState>,
    username: &str,
) -> Result<UserRecord, ApiError> {
    access::update_user(&state.zk(), username, tokens::void_tokens_until_now)
        .await?
        .ok_or_else(|| ApiError::NoSuchUser(username.to_owned()))
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("bootstrap_admin: {0}")]
    BootstrapAdmin(ApiError),
    #[error("publishing users in zookeeper: {0}")]
    Publish(ApiError),
}

/// Creates the bootstrap admin's row if there is none, then publishes every row that never
/// was. Runs once at start, before the listener opens.
pub async fn reconcile(
    state: &web::Data<AppState>,
    bootstrap: Option<&BootstrapAdmin>,
) -> Result<(), ReconcileError> {
    let admin = match bootstrap {
        Some(admin) => bootstrap_row(state, admin)
            .await
            .map_err(ReconcileError::BootstrapAdmin)?,
        None => false,
    };
    let db = state.clone();
    let unpublished = web::block(move || db.store.unpublished())
        .await
        .map_err(|e| ReconcileError::Publish(e.into()))?
        .map_err(|e| ReconcileError::Publish(e.into()))?;
    for username in unpublished {
        let role = match bootstrap {
            Some(bootstrap) if admin && bootstrap.username == username => Role::Admin,
            _ => Role::User,
        };
        publish_row(state, &username, role)
            .await
            .map_err(ReconcileError::Publish)?;
    }
    Ok(())
}

/// Makes sure the bootstrap admin has a row; true if that row is to be published as an
/// admin: it was just created, or an earlier start created it and stopped before publishing
/// it (it still has the configured password). A user of that name who registered before
/// stays what it was.
async fn bootstrap_row(
    state: &web::Data<AppState>,
    admin: &BootstrapAdmin,
) -> Result<bool, ApiError> {
    validate_name("username", &admin.username)?;
    password::check(&admin.password)?;
    let (db, name) = (state.clone(), admin.username.clone());
    let existing = web::block(move || -> Result<_, ApiError> {
        let hash = db.store.password_hash(&name)?;
        let unpublished = db.store.unpublished()?.contains(&name);
        Ok(hash.map(|hash| (hash, unpublished)))
    })
    .await??;
    match existing {
        None => {
            let hash = hash(admin.password.clone()).await?;
            let (db, name) = (state.clone(), admin.username.clone());
            let inserted = web::block(move || db.store.insert(&name, &hash, now_ms())).await??;
            tracing::info!(username = %admin.username, "bootstrap admin created");
            Ok(inserted == Inserted::Created)
        }
        Some((_, false)) => Ok(false),
        Some((stored, true)) => {
            let password = admin.password.clone();
            let same = web::block(move || password::verify(&password, &stored)).await?;
            if !same {
                tracing::warn!(username = %admin.username, "a user of the bootstrap admin's name exists; it stays a plain user");
            }
            Ok(same)
        }
    }
}

async fn publish_row(
    state: &web::Data<AppState>,
    username: &str,
    role: Role,
) -> Result<(), ApiError> {
    if validate_name("username", username).is_err() {
        tracing::warn!(%username, "user database row with an invalid name; not published");
        return Ok(());
    }
    let record = UserRecord {
        role,
        generation: OsRng.next_u64(),
        tokens_after: 0,
    };
    if access::create_user(&state.zk(), username, &record).await? {
        tracing::info!(%username, %role, "published a user from the database");
    }
    let (db, name) = (state.clone(), username.to_owned());
    web::block(move || db.store.mark_published(&name)).await??;
    Ok(())
}
