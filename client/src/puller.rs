//! [`Puller`]: hands out the messages of one mailbox (a queue or a topic subscription) one by one.

use crate::connection::Connection;
use crate::error::ClientError;
use crate::types::Delivery;
use mom_common::MailboxName;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// Longest wait the gateway accepts for one long-poll.
pub const MAX_WAIT: Duration = Duration::from_millis(20_000);

/// Messages fetched per pull unless set otherwise.
pub const DEFAULT_BATCH: u32 = 10;

/// A [`Puller`] over a queue, made by [`Connection::consume`].
pub type Consumer = Puller;

/// A [`Puller`] over a topic subscription, made by [`Connection::subscribe`].
pub type Subscription = Puller;

/// Long-polls one mailbox, buffers what it gets, and hands messages out one at a time.
///
/// Buffered messages are already leased to this puller: keep the batch small enough to process
/// them within the visibility timeout, or acks come back stale. Messages still buffered when the
/// puller is dropped (or when a `next*` future is cancelled mid-request) are delivered again
/// once their lease runs out.
#[derive(Debug)]
pub struct Puller {
    conn: Connection,
    mailbox: MailboxName,
    buffer: VecDeque<Delivery>,
    batch: u32,
    visibility_timeout: Option<Duration>,
}

impl Puller {
    pub(crate) fn new(conn: Connection, mailbox: MailboxName) -> Puller {
        Puller {
            conn,
            mailbox,
            buffer: VecDeque::new(),
            batch: DEFAULT_BATCH,
            visibility_timeout: None,
        }
    }

    /// Fetches up to `max` messages per pull (the gateway accepts 1-100; default 10).
    pub fn with_batch_size(mut self, max: u32) -> Puller {
        self.batch = max;
        self
    }

    /// Leases pulled messages for `timeout` instead of the server's default.
    pub fn with_visibility_timeout(mut self, timeout: Duration) -> Puller {
        self.visibility_timeout = Some(timeout);
        self
    }

    /// The mailbox this puller reads.
    pub fn mailbox(&self) -> &MailboxName {
        &self.mailbox
    }

    /// Messages fetched but not handed out yet.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Waits as long as it takes for the next message.
    pub async fn next(&mut self) -> Result<Delivery, ClientError> {
        loop {
            if let Some(delivery) = self.buffer.pop_front() {
                return Ok(delivery);
            }
            self.fill(MAX_WAIT).await?;
        }
    }

    /// Waits up to about `timeout` for the next message; `None` if none came.
    ///
    /// Always asks the gateway at least once, so a zero timeout polls without waiting.
    pub async fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Delivery>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(delivery) = self.buffer.pop_front() {
                return Ok(Some(delivery));
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            self.fill(remaining.min(MAX_WAIT)).await?;
            if self.buffer.is_empty() && Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Acks `delivery`: `true` if that deleted the message, `false` if the receipt was stale
    /// (the lease ran out and the message went, or will go, to someone else).
    pub async fn ack(&self, delivery: &Delivery) -> Result<bool, ClientError> {
        let outcome = self
            .conn
            .ack_in(&self.mailbox, &[delivery.receipt.as_str()])
            .await?;
        Ok(outcome.acked > 0)
    }

    /// One long-poll of up to `wait`, appending whatever arrives to the buffer.
    async fn fill(&mut self, wait: Duration) -> Result<(), ClientError> {
        let messages = self
            .conn
            .pull_from(&self.mailbox, self.batch, self.visibility_timeout, wait)
            .await?;
        self.buffer.extend(messages);
        Ok(())
    }
}
