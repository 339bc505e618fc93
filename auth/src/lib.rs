//! The MOM auth service: keeps users' passwords (SQLite) and publishes their records (role,
//! generation, `tokens_after`) in ZooKeeper for the rest of the cluster; checks passwords,
//! issues the HS256 tokens that the gateway verifies with the shared secret, and lets admins
//! manage users.
//!
//! Invariants: the listener opens only after the database is open, ZooKeeper's layout
//! exists and every database user has a ZooKeeper record (see [`users::reconcile`]); the
//! JWT secret is never empty.

pub mod admin;
pub mod error;
pub mod http;
pub mod limits;
pub mod login;
pub mod me;
pub mod password;
pub mod store;
pub mod tokens;
pub mod users;
pub mod zk;

use actix_web::{dev::Server, web, App, HttpServer};
use mom_common::token::TokenKeys;
use mom_config::AuthConfig;
use std::{io, net::SocketAddr, path::PathBuf, time::Duration};
use store::{StoreError, UserStore};

/// How often idle keys are dropped from the rate limiters.
const LIMITER_HOUSEKEEPING: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An empty HMAC key would let anyone mint valid tokens.
    #[error("jwt_secret must not be empty")]
    EmptySecret,
    #[error(transparent)]
    Limits(#[from] limits::ZeroLimit),
    #[error("cannot create database directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot prepare the password hasher: {0}")]
    Hasher(String),
    #[error("zookeeper: {0}")]
    ZooKeeper(#[from] mom_catalog::CatalogError),
    #[error(transparent)]
    Reconcile(#[from] users::ReconcileError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("HTTP server failed: {0}")]
    Serve(io::Error),
}

impl From<zookeeper_client::Error> for StartError {
    fn from(e: zookeeper_client::Error) -> Self {
        StartError::ZooKeeper(e.into())
    }
}

/// A bound, not yet awaited server.
pub struct Running {
    pub server: Server,
    /// The addresses actually bound; differs from the configured one when it asks for port 0.
    pub addrs: Vec<SocketAddr>,
}

/// Opens the user database and ZooKeeper, publishes users, and binds the listener. Must be
/// called inside an actix runtime.
pub async fn start(config: AuthConfig) -> Result<Running, StartError> {
    if config.jwt_secret.is_empty() {
        return Err(StartError::EmptySecret);
    }
    let limits = limits::Limits::new(&config)?;
    let database = config.database.clone();
    // Opening SQLite and hashing are blocking work; keep them off the executor even at startup.
    let (store, dummy_hash) = web::block(move || -> Result<_, StartError> {
        if let Some(dir) = database.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StartError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let store = UserStore::open(&database)?;
        let dummy_hash = password::hash("timing-equaliser-not-a-real-password")
            .map_err(|e| StartError::Hasher(e.to_string()))?;
        Ok((store, dummy_hash))
    })
    .await
    .map_err(|e| StartError::Hasher(e.to_string()))??;
    let catalog = zk::open(&config.zookeeper).await?;

    let state = web::Data::new(http::AppState {
        store,
        keys: TokenKeys::new(&config.jwt_secret),
        token_lifetime: Duration::from_secs(config.token_lifetime_secs),
        dummy_hash,
        catalog,
        limits,
        open_registration: config.open_registration,
    });
    users::reconcile(&state, config.bootstrap_admin.as_ref()).await?;
    let housekeeping = state.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(LIMITER_HOUSEKEEPING);
        loop {
            every.tick().await;
            housekeeping.limits.forget_idle();
        }
    });

    let server = HttpServer::new({
        let state = state.clone();
        move || {
            App::new()
                .app_data(state.clone())
                .configure(http::configure)
                .default_service(web::to(http::not_found))
        }
    })
    .bind(config.listen)
    .map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let addrs = server.addrs();
    Ok(Running {
        server: server.run(),
        addrs,
    })
}

/// Runs the service until it is told to stop (SIGINT/SIGTERM shut it down gracefully).
pub async fn run(config: AuthConfig) -> Result<(), StartError> {
    let database = config.database.clone();
    let registration = config.open_registration;
    let running = start(config).await?;
    for addr in &running.addrs {
        tracing::info!(%addr, database = %database.display(), open_registration = registration, "auth service listening");
    }
    running.server.await.map_err(StartError::Serve)
}
