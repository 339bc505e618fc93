//! Opening a ZooKeeper session and reacting to its loss, and the ACLs of what MOM creates.
//!
//! With `digest` credentials configured, every session authenticates with them and every
//! znode MOM creates is `creator_all`: only sessions holding the same credentials (every MOM
//! service) can read or change it. All sessions of one process use the same credentials, so
//! the choice is made once, at the first connect.

use mom_config::ZooKeeperConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use zookeeper_client::{Acls, Client, CreateMode, CreateOptions, Error as ZkError, SessionState};

/// Whether this process's sessions authenticate (and so create `creator_all` znodes).
static AUTHENTICATED: AtomicBool = AtomicBool::new(false);

/// The ACLs for a new znode: readable and writable only with MOM's credentials when there are
/// any.
pub fn znode_acls() -> Acls<'static> {
    if AUTHENTICATED.load(Ordering::Relaxed) {
        Acls::creator_all()
    } else {
        Acls::anyone_all()
    }
}

pub(crate) fn create_options(mode: CreateMode) -> CreateOptions<'static> {
    mode.with_acls(znode_acls())
}

/// Connects, retrying while the ensemble is not serving yet (it answers `NoHosts` then).
pub async fn connect(config: &ZooKeeperConfig, give_up_after: Duration) -> Result<Client, ZkError> {
    let deadline = Instant::now() + give_up_after;
    match &config.digest {
        Some(_) => AUTHENTICATED.store(true, Ordering::Relaxed),
        None => tracing::warn!(
            "no zookeeper digest configured: anyone who reaches zookeeper can change the cluster"
        ),
    }
    loop {
        let mut connector = Client::connector()
            .with_session_timeout(Duration::from_millis(config.session_timeout_ms));
        if let Some(digest) = &config.digest {
            connector = connector.with_auth("digest", digest.as_bytes());
        }
        let attempt = connector.connect(&config.connect).await;
        match attempt {
            Ok(client) => return Ok(client),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, connect = %config.connect, "zookeeper not reachable yet, retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Ends the process when the session expires.
///
/// An expired session has lost its ephemeral znodes and watches; restarting (systemd does)
/// rebuilds all of them from scratch, which is simpler and safer than patching state in place.
pub fn exit_on_session_loss(client: &Client, service: &'static str) {
    let mut states = client.state_watcher();
    tokio::spawn(async move {
        loop {
            match states.changed().await {
                SessionState::Expired | SessionState::AuthFailed | SessionState::Closed => {
                    tracing::error!(
                        service,
                        "zookeeper session lost; exiting so that a restart re-registers"
                    );
                    std::process::exit(3);
                }
                state => tracing::info!(service, ?state, "zookeeper session state changed"),
            }
        }
    });
}

/// Returns when the client's session has ended for good (expired, closed or refused).
pub async fn session_ended(client: &Client) {
    let mut states = client.state_watcher();
    loop {
        if matches!(
            states.changed().await,
            SessionState::Expired | SessionState::AuthFailed | SessionState::Closed
        ) {
            return;
        }
    }
}
