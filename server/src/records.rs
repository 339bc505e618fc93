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
