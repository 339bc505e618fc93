//! Opening a ZooKeeper session and reacting to its loss.

use mom_config::ZooKeeperConfig;
use std::time::{Duration, Instant};
use zookeeper_client::{Client, Error as ZkError, SessionState};

/// Connects, retrying while the ensemble is not serving yet (it answers `NoHosts` then).
pub async fn connect(config: &ZooKeeperConfig, give_up_after: Duration) -> Result<Client, ZkError> {
    let deadline = Instant::now() + give_up_after;
    loop {
        let attempt = Client::connector()
            .with_session_timeout(Duration::from_millis(config.session_timeout_ms))
            .connect(&config.connect)
            .await;
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
