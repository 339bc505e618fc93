//! A mailbox is where a node keeps the messages of one queue or one topic subscription.

use crate::names::{validate_name, NameError};
use crate::proto;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MailboxName {
    Queue(String),
    Subscription { topic: String, subscriber: String },
}

impl MailboxName {
    /// Storage key; `/` cannot appear in names, so keys never collide.
    pub fn key(&self) -> String {
        match self {
            MailboxName::Queue(queue) => format!("q/{queue}"),
            MailboxName::Subscription { topic, subscriber } => format!("t/{topic}/{subscriber}"),
        }
    }

    /// The mailbox a [`MailboxName::key`] names.
    pub fn from_key(key: &str) -> Option<MailboxName> {
        if let Some(queue) = key.strip_prefix("q/") {
            return Some(MailboxName::Queue(queue.to_owned()));
        }
        let (topic, subscriber) = key.strip_prefix("t/")?.split_once('/')?;
        Some(MailboxName::Subscription {
            topic: topic.to_owned(),
            subscriber: subscriber.to_owned(),
        })
    }

    pub fn to_proto(&self) -> proto::Mailbox {
        match self {
            MailboxName::Queue(queue) => proto::Mailbox {
                queue: queue.clone(),
                ..Default::default()
            },
            MailboxName::Subscription { topic, subscriber } => proto::Mailbox {
                topic: topic.clone(),
                subscriber: subscriber.clone(),
                ..Default::default()
            },
        }
    }

    pub fn from_proto(mailbox: &proto::Mailbox) -> Result<Self, NameError> {
        if mailbox.queue.is_empty() {
            validate_name("topic", &mailbox.topic)?;
            validate_name("subscriber", &mailbox.subscriber)?;
            Ok(MailboxName::Subscription {
                topic: mailbox.topic.clone(),
                subscriber: mailbox.subscriber.clone(),
            })
        } else {
            validate_name("queue", &mailbox.queue)?;
            Ok(MailboxName::Queue(mailbox.queue.clone()))
        }
    }
}

impl fmt::Display for MailboxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailboxName::Queue(queue) => write!(f, "queue {queue:?}"),
            MailboxName::Subscription { topic, subscriber } => {
                write!(f, "subscription {subscriber:?} of topic {topic:?}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_mailbox() {
        for mailbox in [
            MailboxName::Queue("orders".into()),
            MailboxName::Subscription {
                topic: "news".into(),
                subscriber: "late".into(),
            },
        ] {
            assert_eq!(MailboxName::from_key(&mailbox.key()), Some(mailbox));
        }
        assert_eq!(MailboxName::from_key("x/y"), None);
    }
}
