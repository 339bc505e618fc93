//! Shared vocabulary of MOM: the gRPC protocol, resource names, routing rules and access tokens.

pub mod access;
pub mod advertise;
pub mod channels;
pub mod mailbox;
pub mod message;
pub mod metrics;
pub mod names;
pub mod receipt;
pub mod rest;
pub mod routing;
pub mod token;

pub mod proto {
    tonic::include_proto!("mom.v1");
}

pub use mailbox::MailboxName;
pub use names::{ExchangeKind, NameError};
