//! The vocabulary of permissions, shared by the services that check them (gateway, nodes,
//! auth) and the clients that grant them: roles, the kinds of resources, and RabbitMQ's
//! three permissions. The rules are in `mom_catalog::access`.

use serde::{Deserialize, Serialize};
use std::fmt;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::User => "user",
            Role::Admin => "admin",
        })
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    Exchange,
    Queue,
    Topic,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 3] = [
        ResourceKind::Exchange,
        ResourceKind::Queue,
        ResourceKind::Topic,
    ];
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceKind::Exchange => "exchange",
            ResourceKind::Queue => "queue",
            ResourceKind::Topic => "topic",
        })
    }
}

impl std::str::FromStr for ResourceKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "exchange" => Ok(ResourceKind::Exchange),
            "queue" => Ok(ResourceKind::Queue),
            "topic" => Ok(ResourceKind::Topic),
            other => Err(format!(
                "unknown resource kind {other:?}: expected exchange, queue or topic"
            )),
        }
    }
}

/// RabbitMQ's three: `configure` declares, deletes and binds; `write` publishes; `read`
/// consumes (pull, ack, subscribe, depth) and lets a queue be bound to an exchange.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Configure,
    Write,
    Read,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Permission::Configure => "configure",
            Permission::Write => "write",
            Permission::Read => "read",
        })
    }
}
