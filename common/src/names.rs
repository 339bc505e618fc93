//! Rules for the names users give to exchanges, queues, topics, subscribers and routing keys.
//!
//! Names end up as ZooKeeper znode names and in mailbox keys, so they are restricted to a
//! character set that is safe in both and leaves `/` and `:` free as separators.

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

pub const MAX_NAME_LEN: usize = 128;
pub const MAX_ROUTING_KEY_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} is longer than {max} characters")]
    TooLong { what: &'static str, max: usize },
    #[error("{what} may only contain letters, digits, '.', '_' and '-' (got {value:?})")]
    BadCharacter { what: &'static str, value: String },
    #[error(
        "routing key may only contain letters, digits, '.', '_', '-', '*' and '#' (got {0:?})"
    )]
    BadRoutingKey(String),
    #[error("unknown exchange kind {0:?}: expected direct, topic or fanout")]
    UnknownExchangeKind(String),
}

/// Checks a resource name (exchange, queue, topic, subscriber, node id).
pub fn validate_name(what: &'static str, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty { what });
    }
    if value.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            what,
            max: MAX_NAME_LEN,
        });
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    // "." and ".." are not valid znode names.
    if !value.chars().all(allowed) || value.chars().all(|c| c == '.') {
        return Err(NameError::BadCharacter {
            what,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// Checks a routing key or binding pattern; empty is allowed (fanout ignores keys).
pub fn validate_routing_key(value: &str) -> Result<(), NameError> {
    if value.len() > MAX_ROUTING_KEY_LEN {
        return Err(NameError::TooLong {
            what: "routing key",
            max: MAX_ROUTING_KEY_LEN,
        });
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*' | '#');
    if !value.chars().all(allowed) {
        return Err(NameError::BadRoutingKey(value.to_owned()));
    }
    Ok(())
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeKind {
    /// Delivers to queues whose binding key equals the routing key.
    Direct,
    /// Delivers to queues whose binding pattern matches the routing key (`*` one word, `#` any).
    Topic,
    /// Delivers to every bound queue.
    Fanout,
}

impl ExchangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Fanout => "fanout",
        }
    }
}

impl fmt::Display for ExchangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExchangeKind {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "direct" => Ok(ExchangeKind::Direct),
            "topic" => Ok(ExchangeKind::Topic),
            "fanout" => Ok(ExchangeKind::Fanout),
            other => Err(NameError::UnknownExchangeKind(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        assert!(validate_name("queue", "orders.eu-1_a").is_ok());
    }

    #[test]
    fn rejects_separators_and_dots_only() {
        for bad in ["", "a/b", "a:b", "a b", ".", "..", "é"] {
            assert!(validate_name("queue", bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_name("queue", &"x".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn routing_keys_allow_wildcards_but_not_slashes() {
        assert!(validate_routing_key("stock.*.#").is_ok());
        assert!(validate_routing_key("").is_ok());
        assert!(validate_routing_key("a/b").is_err());
    }
}
