//! Partition log records as the node stores and replicates them: an encoded `LogRecord`
//! (see the `.proto`) with the publish's message id kept beside it for deduplication.

use mom_common::proto::{self, log_record::Kind, LogRecord};
use mom_replicator::protocol::{Entry, Payload};
use prost::Message;

/// One record's bytes, as the protocol core carries them (it never looks inside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub message_id: Option<String>,
    pub bytes: Vec<u8>,
}

impl Record {
    pub fn new(kind: Kind) -> Record {
        let message_id = match &kind {
            Kind::Publish(publish) => Some(publish.message_id.clone()),
            _ => None,
        };
        Record {
            message_id,
            bytes: LogRecord { kind: Some(kind) }.encode_to_vec(),
        }
    }

    /// What the record says; a record this node cannot read is treated as carrying nothing,
    /// which only happens if the log was corrupted on disk.
    pub fn decode(bytes: &[u8]) -> Option<Kind> {
        match LogRecord::decode(bytes) {
            Ok(record) => record.kind,
            Err(e) => {
                tracing::error!(error = %e, "undecodable log record");
                None
            }
        }
    }
}

/// The mailboxes field of a publish record and nothing else: decoding it skips the payload
/// without copying it. Tags as in the `.proto`'s `LogRecord.publish` and `Publish.mailboxes`.
#[derive(Clone, PartialEq, prost::Message)]
struct PublishedTo {
    #[prost(message, optional, tag = "2")]
    publish: Option<MailboxesOnly>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct MailboxesOnly {
    #[prost(string, repeated, tag = "7")]
    mailboxes: Vec<String>,
}

/// The mailboxes a publish record went to (none for any other record), cheaply.
pub fn published_to(bytes: &[u8]) -> Vec<String> {
    PublishedTo::decode(bytes)
        .ok()
        .and_then(|r| r.publish)
        .map(|p| p.mailboxes)
        .unwrap_or_default()
}

/// The publish-time field of a publish record and nothing else (tags as in the `.proto`).
#[derive(Clone, PartialEq, prost::Message)]
struct PublishedAt {
    #[prost(message, optional, tag = "2")]
    publish: Option<PublishedAtOnly>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PublishedAtOnly {
    #[prost(uint64, tag = "5")]
    published_at_ms: u64,
}

/// When a publish record was published (none for any other record), cheaply.
pub fn published_at_ms(bytes: &[u8]) -> Option<u64> {
    PublishedAt::decode(bytes)
        .ok()
        .and_then(|r| r.publish)
        .map(|p| p.published_at_ms)
}

impl Payload for Record {
    fn epoch_start() -> Self {
        Record::new(Kind::EpochStart(proto::EpochStart {}))
    }
}

pub fn to_wire(entry: &Entry<Record>) -> proto::LogEntry {
    proto::LogEntry {
        offset: entry.offset,
        epoch: entry.epoch,
        record: entry.data.bytes.clone(),
        message_id: entry.data.message_id.clone().unwrap_or_default(),
    }
}

pub fn from_wire(entry: proto::LogEntry) -> Entry<Record> {
    Entry {
        offset: entry.offset,
        epoch: entry.epoch,
        data: Record {
            message_id: (!entry.message_id.is_empty()).then_some(entry.message_id),
            bytes: entry.record,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_to_reads_only_the_mailboxes() {
        let record = Record::new(Kind::Publish(proto::Publish {
            message_id: "m".into(),
            payload: vec![7; 1000],
            mailboxes: vec!["q/a".into(), "q/b".into()],
            ..Default::default()
        }));
        assert_eq!(published_to(&record.bytes), ["q/a", "q/b"]);
        let purge = Record::new(Kind::Purge(proto::Purge {
            mailbox: "q/a".into(),
            ..Default::default()
        }));
        assert!(published_to(&purge.bytes).is_empty());
        assert_eq!(published_at_ms(&purge.bytes), None);
    }

    #[test]
    fn published_at_reads_only_the_publish_time() {
        let record = Record::new(Kind::Publish(proto::Publish {
            message_id: "m".into(),
            payload: vec![7; 1000],
            published_at_ms: 1_234,
            ..Default::default()
        }));
        assert_eq!(published_at_ms(&record.bytes), Some(1_234));
    }
}
