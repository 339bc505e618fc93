//! Storage round trips: appends, commits applying records, truncation, reset, compaction.

use super::*;
use mom_common::proto::{Acked, Acks, Expire, Publish, Purge};

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("node.db")).unwrap();
    (dir, store)
}

fn publish(id: &str, mailboxes: &[&str], expires_at_ms: u64) -> Record {
    Record::new(Kind::Publish(Publish {
        message_id: id.into(),
        exchange: "ex".into(),
        routing_key: "k".into(),
        payload: id.as_bytes().to_vec(),
        published_at_ms: 1,
        expires_at_ms,
        mailboxes: mailboxes.iter().map(|m| m.to_string()).collect(),
        ..Default::default()
    }))
}

fn entries(from: Offset, epoch: u64, records: Vec<Record>) -> Vec<Entry<Record>> {
    records
        .into_iter()
        .enumerate()
        .map(|(i, data)| Entry {
            offset: from + i as u64,
            epoch,
            data,
        })
        .collect()
}

async fn write(store: &Store, write: Write) {
    store.submit(write).await.unwrap();
}

/// Appends `records` to an empty `partition` at epoch 1 and commits them up to `hw`.
async fn append_and_commit(store: &Store, partition: u32, records: Vec<Record>, hw: Offset) {
    let entries = entries(0, 1, records);
    write(store, Write::Append { partition, entries }).await;
    write(store, Write::Commit { partition, hw }).await;
}

/// Compacts `partition` below `start` (the entry before it of epoch 1).
async fn compact(store: &Store, partition: u32, start: Offset) {
    let prev_epoch = 1;
    write(
        store,
        Write::Compact {
            partition,
            start,
            prev_epoch,
        },
    )
    .await;
}

/// Up to 10 messages waiting in `mailbox`, as a pull sees them at `now_ms`.
fn pending(
    store: &Store,
    mailbox: &str,
    partition: u32,
    now_ms: u64,
) -> Result<Vec<PendingMessage>> {
    let conn = store.reader();
    let offsets = Store::pending_offsets(&conn, mailbox, partition, 10, now_ms)?;
    Store::pending_at_offsets(&conn, mailbox, partition, &offsets, now_ms)
}

fn ids(messages: &[PendingMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.message_id.as_str()).collect()
}

#[tokio::test]
async fn only_committed_entries_are_applied_and_acks_remove_one_mailbox_each() {
    let (_dir, store) = open();
    let records = vec![
        publish("a", &["q/x", "q/y"], 0),
        publish("b", &["q/x"], 0),
        Record::new(Kind::Acks(Acks {
            acked: vec![Acked {
                mailbox: "q/x".into(),
                offset: 0,
            }],
        })),
    ];
    write(
        &store,
        Write::Append {
            partition: 3,
            entries: entries(0, 1, records),
        },
    )
    .await;
    assert!(pending(&store, "q/x", 3, 0).unwrap().is_empty());
    write(
        &store,
        Write::Commit {
            partition: 3,
            hw: 2,
        },
    )
    .await;
    assert_eq!(ids(&pending(&store, "q/x", 3, 0).unwrap()), ["a", "b"]);
    write(
        &store,
        Write::Commit {
            partition: 3,
            hw: 3,
        },
    )
    .await;
    assert_eq!(ids(&pending(&store, "q/x", 3, 0).unwrap()), ["b"]);
    assert_eq!(ids(&pending(&store, "q/y", 3, 0).unwrap()), ["a"]);
    assert_eq!(store.find_message(3, "b").unwrap(), Some(1));
    assert_eq!(store.compaction_point(3).unwrap(), 0);
}

#[tokio::test]
async fn a_message_acked_after_its_offset_was_read_is_not_read_as_pending() {
    let (_dir, store) = open();
    let records = vec![
        publish("a", &["q/x"], 0),
        publish("b", &["q/x"], 0),
        Record::new(Kind::Acks(Acks {
            acked: vec![Acked {
                mailbox: "q/x".into(),
                offset: 0,
            }],
        })),
    ];
    append_and_commit(&store, 0, records, 2).await;
    let offsets = Store::pending_offsets(&store.reader(), "q/x", 0, 10, 0).unwrap();
    assert_eq!(offsets, [0, 1]);
    write(
        &store,
        Write::Commit {
            partition: 0,
            hw: 3,
        },
    )
    .await;
    let read = Store::pending_at_offsets(&store.reader(), "q/x", 0, &offsets, 0).unwrap();
    assert_eq!(ids(&read), ["b"], "the ack applied in between is honoured");
}

#[tokio::test]
async fn outline_survives_reopening_with_epochs_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    {
        let store = Store::open(&path).unwrap();
        let first = (0..3)
            .map(|i| publish(&format!("m{i}"), &["q/x"], 0))
            .collect();
        write(
            &store,
            Write::Append {
                partition: 0,
                entries: entries(0, 1, first),
            },
        )
        .await;
        let second = (3..6)
            .map(|i| publish(&format!("m{i}"), &["q/x"], 0))
            .collect();
        write(
            &store,
            Write::Append {
                partition: 0,
                entries: entries(3, 4, second),
            },
        )
        .await;
        write(
            &store,
            Write::Commit {
                partition: 0,
                hw: 2,
            },
        )
        .await;
        write(
            &store,
            Write::Truncate {
                partition: 0,
                from: 5,
            },
        )
        .await;
    }
    let store = Store::open(&path).unwrap();
    let (log, hw) = store.outline(0).unwrap();
    assert_eq!((log.start, log.end, hw), (0, 5, 2));
    assert_eq!(log.epochs, vec![(1, 0), (4, 3)]);
    assert_eq!(store.entries(0, 1, 9).unwrap().len(), 4);
}

#[tokio::test]
async fn purge_and_expiry_are_records_too() {
    let (_dir, store) = open();
    let records = vec![
        publish("old", &["q/x"], 100),
        publish("new", &["q/x"], 0),
        publish("other", &["q/y"], 0),
        Record::new(Kind::Expire(Expire { until_ms: 150 })),
        Record::new(Kind::Purge(Purge {
            mailbox: "q/y".into(),
            ..Default::default()
        })),
    ];
    append_and_commit(&store, 1, records, 2).await;
    // Expired but not swept yet: never handed out.
    assert_eq!(ids(&pending(&store, "q/x", 1, 120).unwrap()), ["new"]);
    assert!(store.has_expired(1, 120).unwrap());
    write(
        &store,
        Write::Commit {
            partition: 1,
            hw: 5,
        },
    )
    .await;
    assert!(!store.has_expired(1, 120).unwrap());
    assert_eq!(store.count_pending("q/x", 1, 0).unwrap(), 1);
    assert_eq!(store.count_pending("q/y", 1, 0).unwrap(), 0);
}

#[tokio::test]
async fn reset_and_compaction_move_the_log_start() {
    let (_dir, store) = open();
    let records = (0..4)
        .map(|i| publish(&format!("m{i}"), &["q/x"], 0))
        .collect();
    append_and_commit(&store, 2, records, 4).await;
    compact(&store, 2, 2).await;
    let (log, _) = store.outline(2).unwrap();
    assert_eq!((log.start, log.prev_epoch, log.end), (2, 1, 4));
    write(
        &store,
        Write::Reset {
            partition: 2,
            start: 10,
            prev_epoch: 3,
        },
    )
    .await;
    let (log, hw) = store.outline(2).unwrap();
    assert_eq!((log.start, log.end, log.prev_epoch, hw), (10, 10, 3, 10));
    assert!(pending(&store, "q/x", 2, 0).unwrap().is_empty());
    write(&store, Write::Drop { partition: 2 }).await;
    assert!(!store.holds(2).unwrap());
}

#[tokio::test]
async fn compaction_stops_at_the_applied_hw_not_past_entries_still_to_apply() {
    let (_dir, store) = open();
    let records = (0..4)
        .map(|i| publish(&format!("m{i}"), &["q/x"], 0))
        .collect();
    write(
        &store,
        Write::Append {
            partition: 5,
            entries: entries(0, 1, records),
        },
    )
    .await;
    // Nothing applied yet: nothing may go, though nothing is pending either.
    assert_eq!(store.compaction_point(5).unwrap(), 0);
    write(
        &store,
        Write::Commit {
            partition: 5,
            hw: 2,
        },
    )
    .await;
    assert_eq!(store.compaction_point(5).unwrap(), 0);
}

#[tokio::test]
async fn headers_and_content_type_come_back_with_the_payload() {
    let (_dir, store) = open();
    let headers: std::collections::BTreeMap<String, String> = [("trace-id", "t-1"), ("z", "")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let record = Record::new(Kind::Publish(Publish {
        message_id: "bin".into(),
        exchange: "ex".into(),
        routing_key: "k".into(),
        payload: (0..=255u8).collect(),
        published_at_ms: 1,
        mailboxes: vec!["q/x".into()],
        headers: headers.clone(),
        content_type: "application/x-test".into(),
        ..Default::default()
    }));
    write(
        &store,
        Write::Append {
            partition: 1,
            entries: entries(0, 1, vec![record]),
        },
    )
    .await;
    write(
        &store,
        Write::Commit {
            partition: 1,
            hw: 1,
        },
    )
    .await;
    let [message] = pending(&store, "q/x", 1, 0).unwrap().try_into().unwrap();
    assert_eq!(message.payload, (0..=255u8).collect::<Vec<u8>>());
    assert_eq!(message.headers, headers);
    assert_eq!(message.content_type, "application/x-test");
}

#[tokio::test]
async fn a_delayed_message_is_invisible_until_due() {
    let (_dir, store) = open();
    let delayed = Record::new(Kind::Publish(Publish {
        message_id: "later".into(),
        mailboxes: vec!["q/x".into()],
        deliver_at_ms: 500,
        ..Default::default()
    }));
    let records = vec![delayed, publish("now", &["q/x"], 0)];
    append_and_commit(&store, 2, records, 2).await;
    assert_eq!(ids(&pending(&store, "q/x", 2, 499).unwrap()), ["now"]);
    assert_eq!(store.count_pending("q/x", 2, 499).unwrap(), 1);
    assert_eq!(store.next_visible_at("q/x", 2, 499).unwrap(), Some(500));
    assert_eq!(
        ids(&pending(&store, "q/x", 2, 500).unwrap()),
        ["later", "now"]
    );
    assert_eq!(store.next_visible_at("q/x", 2, 500).unwrap(), None);
    assert_eq!(
        store.compaction_point(2).unwrap(),
        0,
        "a delayed message keeps its entry"
    );
}

#[tokio::test]
async fn an_applied_message_id_outlives_compaction_until_the_window_forgets_it() {
    let (_dir, store) = open();
    let records = vec![publish("once", &["q/x"], 0)];
    append_and_commit(&store, 4, records, 1).await;
    compact(&store, 4, 1).await;
    assert!(store.entries(4, 0, 1).unwrap().is_empty(), "compacted");
    assert_eq!(store.find_message(4, "once").unwrap(), Some(0));
    // `publish` stamps published_at_ms 1.
    write(
        &store,
        Write::ForgetIds {
            partition: 4,
            published_before_ms: 1,
        },
    )
    .await;
    assert_eq!(store.find_message(4, "once").unwrap(), Some(0), "not older");
    write(
        &store,
        Write::ForgetIds {
            partition: 4,
            published_before_ms: 2,
        },
    )
    .await;
    assert_eq!(store.find_message(4, "once").unwrap(), None);
}

#[tokio::test]
async fn a_reset_keeps_the_ids_of_applied_publishes_only() {
    let (_dir, store) = open();
    let records = (0..3)
        .map(|i| publish(&format!("m{i}"), &["q/x"], 0))
        .collect();
    append_and_commit(&store, 6, records, 2).await;
    write(
        &store,
        Write::Reset {
            partition: 6,
            start: 10,
            prev_epoch: 2,
        },
    )
    .await;
    assert_eq!(store.find_message(6, "m0").unwrap(), Some(0));
    assert_eq!(store.find_message(6, "m1").unwrap(), Some(1));
    assert_eq!(
        store.find_message(6, "m2").unwrap(),
        None,
        "never committed: a retry must be stored"
    );
}

#[tokio::test]
async fn compaction_keeps_the_ids_it_removes_with_their_publish_time() {
    let (_dir, store) = open();
    let records = (0..2)
        .map(|i| publish(&format!("m{i}"), &["q/x"], 0))
        .collect();
    append_and_commit(&store, 7, records, 2).await;
    assert_eq!(
        store.find_message(7, "m1").unwrap(),
        Some(1),
        "found in the log"
    );
    compact(&store, 7, 1).await;
    assert_eq!(store.find_message(7, "m0").unwrap(), Some(0));
    assert_eq!(store.find_message(7, "m1").unwrap(), Some(1));
    // `publish` stamps published_at_ms 1: the compacted id is as old as its publish.
    write(
        &store,
        Write::ForgetIds {
            partition: 7,
            published_before_ms: 2,
        },
    )
    .await;
    assert_eq!(store.find_message(7, "m0").unwrap(), None, "forgotten");
    assert_eq!(
        store.find_message(7, "m1").unwrap(),
        Some(1),
        "still in the log"
    );
}

#[tokio::test]
async fn a_replay_puts_retained_topic_messages_into_a_new_subscription_once() {
    let (_dir, store) = open();
    let retained = |id: &str, mailboxes: &[&str], published_at_ms: u64| {
        Record::new(Kind::Publish(Publish {
            message_id: id.into(),
            exchange: "news".into(),
            payload: id.as_bytes().to_vec(),
            published_at_ms,
            retain_until_ms: published_at_ms + 1_000,
            mailboxes: mailboxes.iter().map(|m| m.to_string()).collect(),
            ..Default::default()
        }))
    };
    let replay = |from_offset: u64, from_time_ms: u64, at_ms: u64| {
        Record::new(Kind::Replay(mom_common::proto::Replay {
            topic: "news".into(),
            mailbox: "t/news/late".into(),
            from_offset,
            from_time_ms,
            at_ms,
        }))
    };
    let records = vec![
        retained("a", &[], 100),
        retained("b", &["t/news/early"], 200),
        // Routed to the new subscription already (published while it was being made).
        retained("c", &["t/news/late"], 300),
        replay(1, 0, 400),
        replay(0, 0, 1_150),
    ];
    append_and_commit(&store, 5, records, 4).await;
    assert_eq!(
        ids(&pending(&store, "t/news/late", 5, 400).unwrap()),
        ["b", "c"],
        "from offset 1, and c only once"
    );
    assert_eq!(store.history("news", 5, 400).unwrap(), (3, 3, Some(100)));
    assert_eq!(
        store.compaction_point(5).unwrap(),
        0,
        "retained entries stay"
    );
    // At 1150, a's retention (until 1100) has run out: not replayed, expiry record or not.
    write(
        &store,
        Write::Commit {
            partition: 5,
            hw: 5,
        },
    )
    .await;
    assert_eq!(
        ids(&pending(&store, "t/news/late", 5, 1_150).unwrap()),
        ["b", "c"]
    );
    assert_eq!(store.history("news", 5, 1_150).unwrap(), (2, 2, Some(200)));
}

/// Opens a store over a log in an older layout (`create`), holding one publish at offset 1 of
/// partition 7 and one at offset 0 of partition 2 with the same id, and checks that both
/// entries moved into the keyed layout where the store reads and applies them.
async fn check_old_layout_moves(create: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(create).unwrap();
        let record = publish("kept", &["q/x"], 0);
        for (partition, offset) in [(7, 1), (2, 0)] {
            let insert = if create.contains("pos INTEGER") {
                "INSERT INTO log (pos, epoch, message_id, record) VALUES ((?1 << 48) + ?2, 1, 'kept', ?3)"
            } else {
                "INSERT INTO log (partition, offset, epoch, message_id, record) VALUES (?1, ?2, 1, 'kept', ?3)"
            };
            conn.execute(insert, params![partition, offset, record.bytes])
                .unwrap();
        }
        conn.execute_batch("INSERT INTO partitions VALUES (7, 1, 0, 1);")
            .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let layout: String = store
        .reader()
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'log'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(layout.contains("published_at_ms"), "{layout}");
    assert_eq!(store.find_message(7, "kept").unwrap(), Some(1));
    assert_eq!(store.find_message(2, "kept").unwrap(), Some(0));
    assert_eq!(store.find_message(3, "kept").unwrap(), None);
    let (outline, _) = store.outline(7).unwrap();
    assert_eq!((outline.start, outline.end), (1, 2));
    assert_eq!(store.entries(7, 1, 9).unwrap().len(), 1);
    write(
        &store,
        Write::Commit {
            partition: 7,
            hw: 2,
        },
    )
    .await;
    assert_eq!(ids(&pending(&store, "q/x", 7, 0).unwrap()), ["kept"]);
    assert!(pending(&store, "q/x", 2, 0).unwrap().is_empty());
    // A moved entry has no publish time in its row: compacted, its id is remembered as
    // published now, so a window counted from a moment ago keeps it.
    compact(&store, 7, 2).await;
    assert!(store.entries(7, 1, 9).unwrap().is_empty(), "compacted");
    write(
        &store,
        Write::ForgetIds {
            partition: 7,
            published_before_ms: crate::service::now_ms() - 60_000,
        },
    )
    .await;
    assert_eq!(store.find_message(7, "kept").unwrap(), Some(1));
}

#[tokio::test]
async fn a_log_keyed_without_publish_times_is_moved_and_keeps_its_entries() {
    check_old_layout_moves(&format!(
        "CREATE TABLE log (
             pos INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, message_id TEXT,
             record BLOB NOT NULL
         );
         CREATE INDEX log_by_message_id ON log(message_id) WHERE message_id IS NOT NULL;
         {OLD_PARTITIONS_TABLE}"
    ))
    .await;
}

const OLD_PARTITIONS_TABLE: &str = "CREATE TABLE partitions (
    partition INTEGER PRIMARY KEY, log_start INTEGER NOT NULL,
    prev_epoch INTEGER NOT NULL, hw INTEGER NOT NULL);";

/// The log as it was before `pos`: keyed by partition and offset.
const LOG_BY_PARTITION_AND_OFFSET: &str = "CREATE TABLE log (
    partition INTEGER NOT NULL, offset INTEGER NOT NULL, epoch INTEGER NOT NULL,
    message_id TEXT, record BLOB NOT NULL, PRIMARY KEY (partition, offset))";

#[tokio::test]
async fn a_log_in_the_old_without_rowid_layout_is_moved_and_keeps_its_entries() {
    check_old_layout_moves(&format!(
        "{LOG_BY_PARTITION_AND_OFFSET} WITHOUT ROWID; {OLD_PARTITIONS_TABLE}"
    ))
    .await;
}

#[tokio::test]
async fn a_log_keyed_by_partition_and_offset_is_moved_and_keeps_its_entries() {
    check_old_layout_moves(&format!(
        "{LOG_BY_PARTITION_AND_OFFSET};
         CREATE INDEX log_by_message_id ON log(partition, message_id, offset)
             WHERE message_id IS NOT NULL;
         {OLD_PARTITIONS_TABLE}"
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_checkpointer_copies_the_wal_into_the_database_without_the_writer() {
    let (dir, store) = open();
    let db = dir.path().join("node.db");
    let db_bytes = || std::fs::metadata(&db).unwrap().len();
    let before = db_bytes();
    // About 200 pages of 4 KiB: far below the writer's own checkpoint threshold, so only the
    // checkpointer can move them into the database file.
    let records = (0..200)
        .map(|i| {
            Record::new(Kind::Publish(Publish {
                message_id: format!("m{i}"),
                exchange: "ex".into(),
                payload: vec![7; 3_000],
                published_at_ms: 1,
                mailboxes: vec!["q/a".into()],
                ..Default::default()
            }))
        })
        .collect();
    append_and_commit(&store, 0, records, 200).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while db_bytes() < before + 200 * 3_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {} bytes (was {before})",
            db_bytes()
        );
        // Nothing to await: the file grows when the checkpointer's round comes.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[test]
fn log_keys_keep_partitions_apart_and_in_offset_order() {
    assert!(log_pos(2, (1 << OFFSET_BITS) - 1) < log_pos(3, 0));
    assert_eq!(log_pos(2, u64::MAX), log_pos(3, 0));
    assert_eq!(log_range(4, 10), (log_pos(4, 10), log_pos(5, 0)));
    assert_eq!(offset_of(log_pos(5, 1234)), 1234);
    assert!(log_pos(MAX_PARTITIONS - 1, u64::MAX) > log_pos(MAX_PARTITIONS - 1, 0));
}
