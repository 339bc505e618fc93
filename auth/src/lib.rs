//! The MOM auth service: registers users, checks their passwords and issues the HS256 tokens
//! that the gateway and every other service verify with the shared secret.

pub mod http;
pub mod password;
pub mod store;

use actix_web::{dev::Server, web, App, HttpServer};
use mom_common::token::TokenKeys;
use mom_config::AuthConfig;
use std::{io, net::SocketAddr, path::PathBuf, time::Duration};
use store::{StoreError, UserStore};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An empty HMAC key would let anyone mint valid tokens.
    #[error("jwt_secret must not be empty")]
    EmptySecret,
    #[error("cannot create database directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot prepare the password hasher: {0}")]
    Hasher(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("HTTP server failed: {0}")]
    Serve(io::Error),
}

/// A bound, not yet awaited server.
pub struct Running {
    pub server: Server,
    /// The addresses actually bound; differs from the configured one when it asks for port 0.
    pub addrs: Vec<SocketAddr>,
}

/// Opens the user database and binds the listener. Must be called inside an actix runtime.
pub async fn start(config: AuthConfig) -> Result<Running, StartError> {
    if config.jwt_secret.is_empty() {
        return Err(StartError::EmptySecret);
    }
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

    let state = web::Data::new(http::AppState {
        store,
        keys: TokenKeys::new(&config.jwt_secret),
        token_lifetime: Duration::from_secs(config.token_lifetime_secs),
        dummy_hash,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(http::configure)
            .default_service(web::to(http::not_found))
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
    let running = start(config).await?;
    for addr in &running.addrs {
        tracing::info!(%addr, database = %database.display(), "auth service listening");
    }
    running.server.await.map_err(StartError::Serve)
}
