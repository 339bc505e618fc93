//! [`DeliveryStream`]: consumes a mailbox (queue or topic subscription) over the gateway's
//! gRPC `Consume` stream ([`crate::grpc_stream`], the default) or its Server-Sent Events
//! stream (`GET .../stream`): messages are pushed as they land, at most `prefetch` unacked at
//! once; acks go through the ack endpoint, which frees the credit.
//!
//! The stream reconnects by itself when the connection ends or fails (a gateway restarting,
//! say), with a back-off; what the old connection had sent but not been acked comes again once
//! its visibility timeout lapses, so nothing is lost (at-least-once, as with pulls). Only a
//! refusal (401, 403, 404, 400, or an `error` event) is returned as an error.
//!
//! The SSE parser is deliberately small: the gateway sends `data:` lines (one JSON delivery
//! per event), `event: error`, and comment lines; other fields are ignored.

use crate::connection::{mailbox_path, Connection};
use crate::error::ClientError;
use crate::grpc_stream;
use crate::types::Delivery;
use mom_common::MailboxName;
use reqwest::Method;
use std::collections::VecDeque;
use std::time::Duration;
use sync_wrapper::SyncWrapper;
use tokio::time::Instant;

/// No bytes for this long (the gateway sends a comment every 15 s) means the connection died.
const IDLE_LIMIT: Duration = Duration::from_secs(45);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How a [`DeliveryStream`] reaches the gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Transport {
    /// The gateway's gRPC `mom.v1.Consumer/Consume` call (at the address `GET /version`
    /// names): protobuf frames, the payload as bytes.
    #[default]
    Grpc,
    /// Server-Sent Events over the REST API (`GET .../stream`): JSON events.
    Sse,
}

/// A [`DeliveryStream`]'s settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamOptions {
    /// Messages in flight (sent, not acked) at most; the gateway's default (100) if `None`.
    pub prefetch: Option<u32>,
    /// How long each message stays leased to this consumer; the gateway's default if `None`.
    pub visibility_timeout: Option<Duration>,
    pub transport: Transport,
}

/// The stream's open connection.
enum Open {
    Sse(reqwest::Response),
    /// Only ever used through `&mut` (a gRPC stream is not `Sync`; the wrapper keeps
    /// `DeliveryStream` shareable, e.g. for `ack(&self)` across an await).
    Grpc(Box<SyncWrapper<grpc_stream::Deliveries>>),
}

impl std::fmt::Debug for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Open::Sse(_) => "Sse",
            Open::Grpc(_) => "Grpc",
        })
    }
}

/// Pushed deliveries of one mailbox, one at a time; see the module's comment.
#[derive(Debug)]
pub struct DeliveryStream {
    conn: Connection,
    mailbox: MailboxName,
    options: StreamOptions,
    open: Option<Open>,
    /// Bytes of an SSE event not complete yet.
    partial: Vec<u8>,
    ready: VecDeque<Delivery>,
    connects: u64,
}

/// Whether a failure to open the stream may pass (the gateway restarting or overloaded).
fn transient(error: &ClientError) -> bool {
    match error {
        ClientError::Http(_) | ClientError::Unreachable(_) => true,
        ClientError::Api { status, .. } => *status >= 500,
        ClientError::Stream(_) => false,
    }
}

/// One event's fields: its name (`message` unless given) and its `data` lines joined.
fn parse_event(block: &str) -> (String, String) {
    let mut name = String::from("message");
    let mut data: Vec<&str> = Vec::new();
    for line in block.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => name = value.to_owned(),
            "data" => data.push(value),
            _ => {}
        }
    }
    (name, data.join("\n"))
}

/// Where the first complete event in `bytes` ends (after its blank line).
fn event_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let lf = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

impl DeliveryStream {
    pub(crate) fn new(
        conn: Connection,
        mailbox: MailboxName,
        options: StreamOptions,
    ) -> DeliveryStream {
        DeliveryStream {
            conn,
            mailbox,
            options,
            open: None,
            partial: Vec::new(),
            ready: VecDeque::new(),
            connects: 0,
        }
    }

    /// The mailbox this stream reads.
    pub fn mailbox(&self) -> &MailboxName {
        &self.mailbox
    }

    /// How many times the stream was opened (1 + reconnections).
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// Waits as long as it takes for the next message (reconnecting as needed).
    ///
    /// Cancel-safe: a cancelled call loses no message already received.
    pub async fn next(&mut self) -> Result<Delivery, ClientError> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            if let Some(delivery) = self.ready.pop_front() {
                return Ok(delivery);
            }
            let Some(open) = self.open.as_mut() else {
                match self.open().await {
                    Ok(()) => backoff = FIRST_BACKOFF,
                    Err(e) if transient(&e) => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                    Err(e) => return Err(e),
                }
                continue;
            };
            match open {
                Open::Sse(response) => {
                    match tokio::time::timeout(IDLE_LIMIT, response.chunk()).await {
                        Ok(Ok(Some(bytes))) => self.feed(&bytes)?,
                        // Ended, failed or silent too long: open it again.
                        _ => {
                            self.open = None;
                            self.partial.clear();
                        }
                    }
                }
                Open::Grpc(deliveries) => match deliveries.get_mut().message().await {
                    Ok(Some(delivery)) => self.ready.push_back(delivery.into()),
                    // Ended, or failed (a dead connection fails its keep-alive pings).
                    Ok(None) => self.open = None,
                    Err(status) => {
                        self.open = None;
                        if let Some(refused) = grpc_stream::refusal(&status) {
                            return Err(refused);
                        }
                    }
                },
            }
        }
    }

    /// Waits up to `timeout` for the next message; `None` if none came.
    pub async fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Delivery>, ClientError> {
        let deadline = Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, self.next()).await {
            Ok(delivery) => delivery.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Acks `delivery` (which frees its credit on the stream): `true` if that deleted the
    /// message, `false` if the receipt was stale.
    pub async fn ack(&self, delivery: &Delivery) -> Result<bool, ClientError> {
        let outcome = self
            .conn
            .ack_in(&self.mailbox, &[delivery.receipt.as_str()])
            .await?;
        Ok(outcome.acked > 0)
    }

    async fn open(&mut self) -> Result<(), ClientError> {
        let open = match self.options.transport {
            Transport::Grpc => Open::Grpc(Box::new(SyncWrapper::new(
                grpc_stream::open(&self.conn, &self.mailbox, &self.options).await?,
            ))),
            Transport::Sse => Open::Sse(self.open_sse().await?),
        };
        self.open = Some(open);
        self.partial.clear();
        self.connects += 1;
        Ok(())
    }

    async fn open_sse(&self) -> Result<reqwest::Response, ClientError> {
        let mut query = Vec::new();
        if let Some(prefetch) = self.options.prefetch {
            query.push(format!("prefetch={prefetch}"));
        }
        if let Some(timeout) = self.options.visibility_timeout {
            query.push(format!(
                "visibility_timeout_ms={}",
                timeout.as_millis().max(1)
            ));
        }
        let mut path = format!("{}/stream", mailbox_path(&self.mailbox));
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        let request = self
            .conn
            .request(Method::GET, &path)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        self.conn.send(request).await
    }

    /// Adds received bytes; every complete event becomes a delivery (or the stream's end).
    fn feed(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.partial.extend_from_slice(bytes);
        while let Some((end, next)) = event_end(&self.partial) {
            let block = String::from_utf8_lossy(&self.partial[..end]).into_owned();
            self.partial.drain(..next);
            let (name, data) = parse_event(&block);
            if data.is_empty() {
                continue;
            }
            match name.as_str() {
                "message" => {
                    let delivery = serde_json::from_str(&data).map_err(|e| {
                        ClientError::Stream(format!("undecodable event {data:?}: {e}"))
                    })?;
                    self.ready.push_back(delivery);
                }
                "error" => {
                    self.open = None;
                    let message = serde_json::from_str::<serde_json::Value>(&data)
                        .ok()
                        .and_then(|v| v["error"].as_str().map(str::to_owned))
                        .unwrap_or(data);
                    return Err(ClientError::Stream(message));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_on_blank_lines_and_comments_are_skipped() {
        let mut stream = DeliveryStream::new(
            Connection::with_token("http://h:1", "t"),
            MailboxName::Queue("q".into()),
            StreamOptions::default(),
        );
        let delivery = r#"{"message_id":"m","receipt":"0/1/2.3","exchange":"x","routing_key":"k","payload":"p","delivery_count":1,"published_at_ms":5}"#;
        let text = format!(
            ": stream open\nretry: 1000\n\ndata: {delivery}\n\n: keep-alive\n\ndata: {delivery}"
        );
        let (first, rest) = text.as_bytes().split_at(30);
        stream.feed(first).unwrap();
        stream.feed(rest).unwrap();
        assert_eq!(
            stream.ready.len(),
            1,
            "the second event is not complete yet"
        );
        stream.feed(b"\r\n\r\n").unwrap();
        assert_eq!(stream.ready.len(), 2);
        assert_eq!(stream.ready[0].receipt, "0/1/2.3");
        let refused = stream.feed(b"event: error\ndata: {\"error\":\"no read\"}\n\n");
        assert!(matches!(refused, Err(ClientError::Stream(m)) if m == "no read"));
    }
}
