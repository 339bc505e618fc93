//! `mom list <what>`: every kind of resource the gateway can list, as a table for people or
//! as JSON (`--json`) for scripts.

use clap::Subcommand;
use mom_client::Connection;
use serde::Serialize;

#[derive(Subcommand)]
pub enum ListCommand {
    /// Exchanges you may see, with their kinds.
    Exchanges,
    /// Queues you may see.
    Queues,
    /// Topics you may see.
    Topics,
    /// The bindings of an exchange.
    Bindings { exchange: String },
    /// The subscribers of a topic.
    Subscriptions { topic: String },
    /// Broker nodes, live or not.
    Nodes,
    /// Partitions with leader, epoch, replicas and in-sync set.
    Partitions,
    /// Grants you gave or got (all of them, for an admin).
    Permissions,
    /// Admin: users and their roles.
    Users,
}

/// Prints `rows` one per line, or `value` as pretty JSON.
fn emit<T: Serialize>(json: bool, value: &T, rows: Vec<String>) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        for row in rows {
            println!("{row}");
        }
    }
    Ok(())
}

pub async fn run(conn: Connection, command: &ListCommand, json: bool) -> anyhow::Result<()> {
    match command {
        ListCommand::Exchanges => {
            let exchanges = conn.list_exchanges().await?;
            let rows = exchanges
                .iter()
                .map(|e| format!("{}\t{}", e.name, e.kind))
                .collect();
            emit(json, &exchanges, rows)
        }
        ListCommand::Queues => {
            let queues = conn.list_queues().await?;
            emit(json, &queues, queues.clone())
        }
        ListCommand::Topics => {
            let topics = conn.list_topics().await?;
            emit(json, &topics, topics.clone())
        }
        ListCommand::Bindings { exchange } => {
            let info = conn.exchange(exchange).await?;
            let rows = info
                .bindings
                .iter()
                .map(|b| format!("{}\t{:?}", b.queue, b.routing_key))
                .collect();
            emit(json, &info.bindings, rows)
        }
        ListCommand::Subscriptions { topic } => {
            let subscribers = conn.list_subscribers(topic).await?;
            emit(json, &subscribers, subscribers.clone())
        }
        ListCommand::Nodes => {
            let cluster = conn.cluster().await?;
            let rows = cluster
                .nodes
                .iter()
                .map(|n| {
                    let state = if n.live { "live" } else { "DOWN" };
                    format!("{}\t{}\t{state}", n.id, n.address)
                })
                .collect();
            emit(json, &cluster.nodes, rows)
        }
        ListCommand::Partitions => {
            let cluster = conn.cluster().await?;
            let rows = cluster
                .partitions
                .iter()
                .map(|p| {
                    format!(
                        "{}\tleader {}{}\tepoch {}\treplicas {}\tin sync {}",
                        p.partition,
                        p.leader,
                        if p.leader_live { "" } else { " (down)" },
                        p.epoch,
                        p.replicas.join(","),
                        p.isr.join(",")
                    )
                })
                .collect();
            emit(json, &cluster.partitions, rows)
        }
        ListCommand::Permissions => {
            let grants = conn.permissions().await?;
            let rows = grants
                .iter()
                .map(|g| {
                    let permissions: Vec<String> = g
                        .permissions
                        .iter()
                        .map(|p| format!("{p:?}").to_lowercase())
                        .collect();
                    format!(
                        "{}\t{}\t{} {}\t{}\t(by {})",
                        g.id,
                        g.user,
                        g.kind,
                        g.pattern,
                        permissions.join(","),
                        g.granted_by
                    )
                })
                .collect();
            emit(json, &grants, rows)
        }
        ListCommand::Users => {
            let users = conn.users().await?;
            let rows = users
                .iter()
                .map(|u| format!("{}\t{}", u.username, u.role))
                .collect();
            emit(json, &users, rows)
        }
    }
}
