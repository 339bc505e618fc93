//! The auth service's ZooKeeper session: opened at start, renewed whenever it ends.
//!
//! Invariants: the service never exits because ZooKeeper went away; while there is no
//! session, the routes that need user records answer 503 and the rest keep working; every
//! new session replaces the old one in the shared [`Catalog`], so handlers always use the
//! current one.

use mom_catalog::Catalog;
use mom_config::ZooKeeperConfig;
use std::time::Duration;
use zookeeper_client::Client;

/// How long the first connection may take before the start fails.
const FIRST_CONNECT: Duration = Duration::from_secs(30);

/// Connects, creates the catalog's top-level znodes, and keeps the session renewed.
pub async fn open(config: &ZooKeeperConfig) -> Result<Catalog, mom_catalog::CatalogError> {
    let zk = mom_catalog::connect(config, FIRST_CONNECT).await?;
    let catalog = Catalog::new(zk.clone());
    catalog.ensure_layout().await?;
    tokio::spawn(renew_sessions(config.clone(), zk, catalog.clone()));
    Ok(catalog)
}

async fn renew_sessions(config: ZooKeeperConfig, mut zk: Client, catalog: Catalog) {
    loop {
        mom_catalog::session_ended(&zk).await;
        tracing::warn!("zookeeper session ended; reconnecting");
        zk = loop {
            match mom_catalog::connect(&config, Duration::from_secs(3_600)).await {
                Ok(next) => break next,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach zookeeper; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        catalog.use_session(zk.clone());
        tracing::info!("zookeeper session renewed");
    }
}
