//! Queues that dead-letter, from the client's side: declaring a queue with a dead-letter
//! exchange and a delivery limit, and giving messages back (`nack`), requeued or rejected.

use crate::connection::{mailbox_path, Connection};
use crate::error::ClientError;
use mom_common::MailboxName;
use reqwest::Method;
use serde::{Deserialize, Serialize};

/// What a queue does with messages it cannot deliver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueOptions {
    /// Where messages go that were delivered `max_deliveries` times without an ack, or that a
    /// consumer rejected, with `x-death-*` headers saying why; the declarer needs write
    /// permission on it. None: such messages are dropped.
    pub dead_letter_exchange: Option<String>,
    /// Deliveries after which an unacked message is dead-lettered; None: no limit.
    pub max_deliveries: Option<u32>,
}

/// The answer to a nack: how many were given back, and the receipts that were stale.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NackOutcome {
    pub nacked: u64,
    pub stale: Vec<String>,
}

#[derive(Serialize)]
struct QueueBody<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dead_letter_exchange: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_deliveries: Option<u32>,
}

#[derive(Serialize)]
struct NackBody<'a> {
    receipts: Vec<&'a str>,
    requeue: bool,
}

impl Connection {
    /// Declares a queue that dead-letters (see [`QueueOptions`]); declaring an existing queue
    /// with other options is an error (409).
    pub async fn declare_queue_with(
        &self,
        name: &str,
        options: &QueueOptions,
    ) -> Result<(), ClientError> {
        let body = QueueBody {
            name,
            dead_letter_exchange: options.dead_letter_exchange.as_deref(),
            max_deliveries: options.max_deliveries,
        };
        self.send(self.request(Method::POST, "/queues").json(&body))
            .await?;
        Ok(())
    }

    /// Gives deliveries of a queue back: with `requeue` they are ready again at once (the
    /// delivery counts towards the queue's limit); without, they are dead-lettered (or
    /// dropped, if the queue has no dead-letter exchange).
    pub async fn nack<S: AsRef<str>>(
        &self,
        queue: &str,
        receipts: &[S],
        requeue: bool,
    ) -> Result<NackOutcome, ClientError> {
        self.nack_in(&MailboxName::Queue(queue.to_owned()), receipts, requeue)
            .await
    }

    /// [`nack`](Self::nack) for any mailbox (a topic subscription drops rejected messages).
    pub async fn nack_in<S: AsRef<str>>(
        &self,
        mailbox: &MailboxName,
        receipts: &[S],
        requeue: bool,
    ) -> Result<NackOutcome, ClientError> {
        let body = NackBody {
            receipts: receipts.iter().map(AsRef::as_ref).collect(),
            requeue,
        };
        let path = format!("{}/nack", mailbox_path(mailbox));
        self.call(self.request(Method::POST, &path).json(&body))
            .await
    }
}
