//! How an exchange decides whether a binding receives a message, and which partition a
//! message belongs to.

use crate::ExchangeKind;

/// The partition a partition key (`e/<exchange>/<routing key>` or `t/<topic>/<routing key>`)
/// belongs to; fixed for the cluster's life. The gateway and the partitioning service both
/// compute it, so a publish needs no lookup to find its partition.
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % u64::from(partitions.max(1))) as u32
}

/// The key a message's partition is computed from: the kind of destination (`e`xchange,
/// `t`opic, `q`ueue for the default exchange), its name and the routing key.
pub fn partition_key(
    kind: crate::proto::DestinationKind,
    destination: &str,
    routing_key: &str,
) -> String {
    let prefix = match kind {
        crate::proto::DestinationKind::Exchange => "e",
        crate::proto::DestinationKind::Topic => "t",
        crate::proto::DestinationKind::Queue => "q",
    };
    format!("{prefix}/{destination}/{routing_key}")
}

/// True when a message published with `routing_key` goes to a binding with `binding_key`.
pub fn binding_matches(kind: ExchangeKind, binding_key: &str, routing_key: &str) -> bool {
    match kind {
        ExchangeKind::Fanout => true,
        ExchangeKind::Direct => binding_key == routing_key,
        ExchangeKind::Topic => {
            let pattern: Vec<&str> = binding_key.split('.').collect();
            let words: Vec<&str> = routing_key.split('.').collect();
            topic_match(&pattern, &words)
        }
    }
}

/// AMQP topic matching: `*` is exactly one word, `#` is zero or more words.
fn topic_match(pattern: &[&str], words: &[&str]) -> bool {
    // `reachable[j]` is true when the pattern prefix read so far can consume words[..j].
    let mut reachable = vec![false; words.len() + 1];
    reachable[0] = true;
    for part in pattern {
        let mut next = vec![false; words.len() + 1];
        match *part {
            "#" => {
                let mut seen = false;
                for j in 0..=words.len() {
                    seen |= reachable[j];
                    next[j] = seen;
                }
            }
            literal => {
                for j in 0..words.len() {
                    if reachable[j] && (literal == "*" || literal == words[j]) {
                        next[j + 1] = true;
                    }
                }
            }
        }
        reachable = next;
    }
    reachable[words.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExchangeKind::*;

    #[test]
    fn direct_needs_equal_keys() {
        assert!(binding_matches(Direct, "eu", "eu"));
        assert!(!binding_matches(Direct, "eu", "us"));
    }

    #[test]
    fn fanout_ignores_keys() {
        assert!(binding_matches(Fanout, "", "anything.at.all"));
    }

    #[test]
    fn topic_star_is_exactly_one_word() {
        assert!(binding_matches(Topic, "stock.*.nyse", "stock.ibm.nyse"));
        assert!(!binding_matches(Topic, "stock.*.nyse", "stock.nyse"));
        assert!(!binding_matches(Topic, "stock.*", "stock.ibm.nyse"));
    }

    #[test]
    fn topic_hash_is_any_number_of_words() {
        assert!(binding_matches(Topic, "stock.#", "stock"));
        assert!(binding_matches(Topic, "stock.#", "stock.ibm.nyse"));
        assert!(binding_matches(Topic, "#", "x.y"));
        assert!(binding_matches(Topic, "#.nyse", "stock.ibm.nyse"));
        assert!(binding_matches(Topic, "a.#.z", "a.z"));
        assert!(binding_matches(Topic, "a.#.z", "a.b.c.z"));
        assert!(!binding_matches(Topic, "a.#.z", "a.b.c"));
        assert!(!binding_matches(Topic, "stock.#", "bonds.x"));
    }
}
