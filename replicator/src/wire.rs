//! The protocol's fetch request and reply as gRPC messages, and back. Entries travel as
//! `proto::LogEntry`; what a record means is the broker's business, not this crate's.

use crate::protocol::{FetchOutcome, FetchRequest};
use mom_common::proto::{self, fetch_reply::Outcome};

pub fn request_to_wire(partition: u32, follower: &str, r: &FetchRequest) -> proto::FetchRequest {
    proto::FetchRequest {
        partition,
        follower: follower.to_owned(),
        seq: r.seq,
        incarnation: r.incarnation,
        epoch: r.epoch,
        fetch_offset: r.fetch_offset,
        last_fetched_epoch: r.last_fetched_epoch,
    }
}

pub fn request_from_wire(r: &proto::FetchRequest) -> FetchRequest {
    FetchRequest {
        seq: r.seq,
        incarnation: r.incarnation,
        epoch: r.epoch,
        fetch_offset: r.fetch_offset,
        last_fetched_epoch: r.last_fetched_epoch,
    }
}

pub fn outcome_to_wire(outcome: &FetchOutcome) -> Outcome {
    match *outcome {
        FetchOutcome::Records { from, to, hw } => Outcome::Records(proto::Records { from, to, hw }),
        FetchOutcome::Diverging { epoch, end_offset } => {
            Outcome::Diverging(proto::Diverging { epoch, end_offset })
        }
        FetchOutcome::OutOfRange {
            log_start,
            prev_epoch,
        } => Outcome::OutOfRange(proto::OutOfRange {
            log_start,
            prev_epoch,
        }),
        FetchOutcome::Fenced => Outcome::Fenced(proto::Refused {}),
        FetchOutcome::NotLeader => Outcome::NotLeader(proto::Refused {}),
    }
}

/// None for a reply without an outcome (a peer speaking another version): ignore it.
pub fn outcome_from_wire(outcome: Option<Outcome>) -> Option<FetchOutcome> {
    Some(match outcome? {
        Outcome::Records(r) => FetchOutcome::Records {
            from: r.from,
            to: r.to,
            hw: r.hw,
        },
        Outcome::Diverging(d) => FetchOutcome::Diverging {
            epoch: d.epoch,
            end_offset: d.end_offset,
        },
        Outcome::OutOfRange(o) => FetchOutcome::OutOfRange {
            log_start: o.log_start,
            prev_epoch: o.prev_epoch,
        },
        Outcome::Fenced(_) => FetchOutcome::Fenced,
        Outcome::NotLeader(_) => FetchOutcome::NotLeader,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip() {
        for outcome in [
            FetchOutcome::Records {
                from: 1,
                to: 5,
                hw: 3,
            },
            FetchOutcome::Diverging {
                epoch: 2,
                end_offset: 9,
            },
            FetchOutcome::OutOfRange {
                log_start: 7,
                prev_epoch: 1,
            },
            FetchOutcome::Fenced,
            FetchOutcome::NotLeader,
        ] {
            assert_eq!(
                outcome_from_wire(Some(outcome_to_wire(&outcome))),
                Some(outcome)
            );
        }
        assert_eq!(outcome_from_wire(None), None);
    }

    #[test]
    fn requests_round_trip() {
        let request = FetchRequest {
            seq: 4,
            incarnation: 99,
            epoch: 3,
            fetch_offset: 10,
            last_fetched_epoch: 2,
        };
        let wire = request_to_wire(5, "node2", &request);
        assert_eq!((wire.partition, wire.follower.as_str()), (5, "node2"));
        assert_eq!(request_from_wire(&wire), request);
    }
}
