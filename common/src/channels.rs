//! One reusable gRPC channel per peer address.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::Channel;

#[derive(Debug, thiserror::Error)]
#[error("invalid peer address {addr:?}: {reason}")]
pub struct BadAddress {
    pub addr: String,
    pub reason: String,
}

/// Channels connect lazily and reconnect by themselves, so they are kept for the process's
/// life; a peer that moved gets a new entry under its new address.
#[derive(Clone)]
pub struct ChannelPool {
    timeout: Duration,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl ChannelPool {
    /// `timeout` bounds connecting and every call.
    pub fn new(timeout: Duration) -> Self {
        ChannelPool {
            timeout,
            channels: Arc::default(),
        }
    }

    /// The channel to `host:port`.
    pub fn get(&self, addr: &str) -> Result<Channel, BadAddress> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let channel = Channel::from_shared(format!("http://{addr}"))
            .map_err(|e| BadAddress {
                addr: addr.to_owned(),
                reason: e.to_string(),
            })?
            .connect_timeout(self.timeout)
            .timeout(self.timeout)
            .connect_lazy();
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// Connections accepted by a gRPC server, with Nagle's algorithm off: gRPC writes small frames
/// (headers, then trailers) that would otherwise wait for delayed ACKs, tens of milliseconds
/// a call.
pub fn incoming(
    listener: tokio::net::TcpListener,
) -> Result<tonic::transport::server::TcpIncoming, Box<dyn std::error::Error + Send + Sync>> {
    tonic::transport::server::TcpIncoming::from_listener(listener, true, None)
}
