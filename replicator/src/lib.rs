//! Replication of a node's writes to its peer replicas (issue: cluster replication).
//! Not implemented yet: a node currently keeps the only copy of the partitions it owns.
