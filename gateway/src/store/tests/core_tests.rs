//! Appends, commits, Acks, redelivery, dead letters, TTLs, caps and the
//! RAM per push, on simulated time and the in-memory disk.

use protocol::time::Millis;
use tuning::config::{Durability, OverflowPolicy};

use super::{Rig, at, settings};
use crate::store::{AppendError, Delivery, StoreEvent, StoreOpKind, StoreSettings, Ticket};

fn committed(events: &[StoreEvent]) -> Option<Ticket> {
    events
        .iter()
        .filter_map(|e| match e {
            StoreEvent::Committed { through } => Some(*through),
            _ => None,
        })
        .max()
}

#[test]
fn an_append_is_durable_only_once_its_commit_completes() {
    let mut rig = Rig::new(settings());
    let first = rig.push("alice", 1, b"one").ticket;
    assert_eq!(committed(&rig.take_events()), None);
    let ops = rig.take_ops();
    let kinds: Vec<&str> = ops
        .iter()
        .map(|o| match o.kind {
            StoreOpKind::Create { .. } => "create",
            StoreOpKind::SyncDir => "syncdir",
            StoreOpKind::Append { .. } => "append",
            StoreOpKind::Sync { .. } => "sync",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["create", "syncdir", "append", "sync"]);
    // Appends while the commit is in flight wait for the next one.
    let second = rig.push("bob", 2, b"two").ticket;
    assert!(second > first);
    assert!(rig.take_ops().is_empty(), "one commit in flight at a time");
    let (head, last) = ops.split_at(ops.len() - 1);
    rig.complete(head.to_vec());
    assert_eq!(
        committed(&rig.take_events()),
        None,
        "not before the fdatasync"
    );
    assert!(
        rig.disk.image(true).values().all(|f| f.is_empty()),
        "a power cut now keeps nothing"
    );
    rig.complete(last.to_vec());
    let through = committed(&rig.take_events()).expect("committed");
    assert!(through >= first && through < second);
    rig.settle();
    assert!(committed(&rig.take_events()).expect("second commit") >= second);
    // Both survive a power cut.
    let (after, _) = rig.restart(true);
    assert_eq!(after.pending_ids("alice"), [1]);
    assert_eq!(after.pending_ids("bob"), [2]);
}

#[test]
fn with_os_durability_the_write_is_the_commit() {
    let mut rig = Rig::new(StoreSettings {
        durability: Durability::Os,
        ..settings()
    });
    let ticket = rig.push("alice", 1, b"one").ticket;
    let ops = rig.take_ops();
    assert!(
        ops.iter()
            .all(|o| !matches!(o.kind, StoreOpKind::Sync { .. } | StoreOpKind::SyncDir)),
        "{ops:?}"
    );
    rig.complete(ops);
    assert!(committed(&rig.take_events()).expect("committed") >= ticket);
    // A SIGKILL keeps what the OS has.
    let (after, _) = rig.restart(false);
    assert_eq!(after.pending_ids("alice"), [1]);
}

#[test]
fn an_ack_removes_the_push_for_good() {
    let mut rig = Rig::new(settings());
    rig.push("alice", 1, b"one");
    rig.push("alice", 2, b"two");
    assert_eq!(
        rig.core.on_delivered(rig.now, "alice", 1),
        Delivery::Send { deliveries: 1 }
    );
    assert!(rig.core.ack("alice", 1));
    assert!(!rig.core.ack("alice", 1), "a second ack finds nothing");
    assert!(
        !rig.core.ack("bob", 2),
        "another user's ack removes nothing"
    );
    assert_eq!(rig.pending_ids("alice"), [2]);
    // Its Ack deadline is gone with it.
    rig.advance(10_000);
    assert!(
        rig.take_events()
            .iter()
            .all(|e| !matches!(e, StoreEvent::Redeliver { .. }))
    );
    rig.settle();
    let (after, _) = rig.restart(true);
    assert_eq!(after.pending_ids("alice"), [2]);
    assert_eq!(rig.core.stats().acked, 1);
}

#[test]
fn unacked_pushes_are_redelivered_with_backoff_then_dead_lettered_once() {
    // ack_timeout 100 ms doubling to 400, max_deliveries 3.
    let mut rig = Rig::new(settings());
    rig.push("alice", 7, b"seven");
    assert_eq!(
        rig.core.next_deadline(rig.now).map(|t| t > Millis(1_000)),
        Some(true),
        "only the TTL"
    );
    assert_eq!(
        rig.core.on_delivered(rig.now, "alice", 7),
        Delivery::Send { deliveries: 1 }
    );
    let mut schedule = Vec::new();
    for waited in [100, 200] {
        assert_eq!(
            rig.core.next_deadline(rig.now),
            Some(rig.now.now.saturating_add(waited))
        );
        rig.advance(waited - 1);
        assert!(rig.take_events().is_empty(), "not before {waited} ms");
        rig.advance(1);
        let events = rig.take_events();
        let Some(StoreEvent::Redeliver { id, deliveries, .. }) = events.first() else {
            panic!("{events:?}");
        };
        schedule.push((waited, *id, *deliveries));
        match rig.core.on_delivered(rig.now, "alice", 7) {
            Delivery::Send { deliveries } => assert_eq!(deliveries, schedule.len() as u16 + 1),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(schedule, [(100, 7, 1), (200, 7, 2)]);
    // The third delivery's wait is 400 (capped); then it is dead.
    rig.advance(399);
    assert!(rig.take_events().is_empty());
    rig.advance(1);
    let events = rig.take_events();
    assert!(
        matches!(
            &events[..],
            [StoreEvent::DeadLettered {
                id: 7,
                deliveries: 3,
                ..
            }]
        ),
        "{events:?}"
    );
    assert_eq!(rig.pending_ids("alice"), Vec::<u64>::new());
    // No loop: nothing more comes, and a late delivery finds nothing.
    rig.advance(100_000);
    assert!(rig.take_events().iter().all(|e| !matches!(
        e,
        StoreEvent::Redeliver { .. } | StoreEvent::DeadLettered { .. }
    )));
    assert_eq!(
        rig.core.on_delivered(rig.now, "alice", 7),
        Delivery::Unknown
    );
    let stats = rig.core.stats();
    assert_eq!(
        (stats.delivered, stats.redelivered, stats.dead_lettered),
        (3, 2, 1)
    );
    // Dead after a restart too.
    rig.settle();
    let (after, _) = rig.restart(true);
    assert_eq!(after.core.pending_count("alice"), 0);
}

#[test]
fn a_push_that_had_its_deliveries_is_dead_lettered_instead_of_sent() {
    let mut rig = Rig::new(settings());
    rig.push("alice", 1, b"x");
    for n in 1..=3 {
        // Reconnects deliver again before any Ack deadline.
        assert_eq!(
            rig.core.on_delivered(rig.now, "alice", 1),
            Delivery::Send { deliveries: n }
        );
    }
    assert_eq!(
        rig.core.on_delivered(rig.now, "alice", 1),
        Delivery::DeadLettered
    );
    assert!(matches!(
        &rig.take_events()[..],
        [StoreEvent::DeadLettered { id: 1, .. }]
    ));
    rig.advance(10_000);
    assert!(
        rig.take_events()
            .iter()
            .all(|e| !matches!(e, StoreEvent::DeadLettered { .. }))
    );
}

#[test]
fn delivery_counts_survive_a_restart() {
    let mut rig = Rig::new(settings());
    rig.push("alice", 1, b"x");
    rig.core.on_delivered(rig.now, "alice", 1);
    rig.core.on_delivered(rig.now, "alice", 1);
    rig.settle();
    let (mut after, _) = rig.restart(true);
    let p: Vec<_> = after.core.pending("alice").collect();
    assert_eq!((p[0].deliveries, p[0].in_flight), (2, false));
    assert_eq!(
        after.core.on_delivered(after.now, "alice", 1),
        Delivery::Send { deliveries: 3 }
    );
    assert_eq!(
        after.core.on_delivered(after.now, "alice", 1),
        Delivery::DeadLettered
    );
}

#[test]
fn pushes_expire_after_their_own_ttl_or_the_default() {
    let mut rig = Rig::new(StoreSettings {
        ttl_ms: 1_000,
        ..settings()
    });
    rig.try_push("alice", 1, b"default ttl", None).unwrap();
    rig.try_push("alice", 2, b"short ttl", Some(300)).unwrap();
    rig.try_push("bob", 3, b"zero means default", Some(0))
        .unwrap();
    assert_eq!(rig.core.next_deadline(rig.now), Some(Millis(300)));
    rig.advance(299);
    assert!(rig.take_events().is_empty());
    rig.advance(1);
    assert!(matches!(
        &rig.take_events()[..],
        [StoreEvent::Expired { id: 2, .. }]
    ));
    assert_eq!(rig.pending_ids("alice"), [1]);
    assert_eq!(rig.core.next_deadline(rig.now), Some(Millis(1_000)));
    // A delivery attempt past the TTL expires it instead of sending it.
    rig.now = at(1_000);
    assert_eq!(
        rig.core.on_delivered(rig.now, "alice", 1),
        Delivery::Expired
    );
    rig.advance(0);
    let mut expired: Vec<u64> = rig
        .take_events()
        .iter()
        .filter_map(|e| match e {
            StoreEvent::Expired { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    expired.sort_unstable();
    assert_eq!(expired, [1, 3]);
    assert_eq!(rig.core.stats().expired, 3);
    assert_eq!(rig.core.next_deadline(rig.now), None);
}

#[test]
fn reject_policy_refuses_over_the_count_and_the_bytes() {
    let mut rig = Rig::new(StoreSettings {
        user_max_pushes: 2,
        user_max_bytes: 300,
        overflow: OverflowPolicy::Reject,
        ..settings()
    });
    rig.push("alice", 1, b"a");
    rig.push("alice", 2, b"b");
    assert_eq!(
        rig.try_push("alice", 3, b"c", None),
        Err(AppendError::InboxFull)
    );
    rig.push("bob", 4, &[0; 100]);
    assert_eq!(
        rig.try_push("bob", 5, &[0; 200], None),
        Err(AppendError::InboxFull)
    );
    assert_eq!(
        rig.try_push("carol", 6, &[0; 400], None),
        Err(AppendError::InboxFull),
        "alone over the byte cap"
    );
    assert_eq!(rig.pending_ids("alice"), [1, 2]);
    assert_eq!(rig.pending_ids("bob"), [4]);
    assert_eq!(rig.core.stats().rejected_inbox_full, 3);
    assert_eq!(
        rig.try_push("alice", 1, b"again", None),
        Err(AppendError::Duplicate(1))
    );
}

#[test]
fn drop_oldest_policy_makes_room_and_counts() {
    let mut rig = Rig::new(StoreSettings {
        user_max_pushes: 2,
        user_max_bytes: 400,
        overflow: OverflowPolicy::DropOldest,
        ..settings()
    });
    rig.push("alice", 1, b"a");
    rig.push("alice", 2, b"b");
    rig.core.on_delivered(rig.now, "alice", 1);
    assert_eq!(rig.push("alice", 3, b"c").dropped, 1);
    assert_eq!(rig.pending_ids("alice"), [2, 3]);
    assert!(matches!(
        &rig.take_events()[..],
        [StoreEvent::Dropped { id: 1, .. }]
    ));
    // By bytes: one big push pushes both out.
    assert_eq!(rig.push("alice", 4, &[0; 350]).dropped, 2);
    assert_eq!(rig.pending_ids("alice"), [4]);
    assert_eq!(rig.core.stats().dropped_oldest, 3);
    // The dropped push's Ack deadline went with it.
    rig.advance(10_000);
    assert!(
        rig.take_events()
            .iter()
            .all(|e| !matches!(e, StoreEvent::Redeliver { .. }))
    );
    rig.settle();
    let (after, _) = rig.restart(true);
    assert_eq!(after.pending_ids("alice"), [4]);
}

#[test]
fn the_whole_store_cap_refuses_whatever_the_policy() {
    let mut rig = Rig::new(StoreSettings {
        max_pushes: 3,
        overflow: OverflowPolicy::DropOldest,
        ..settings()
    });
    for (user, id) in [("a", 1), ("b", 2), ("c", 3)] {
        rig.push(user, id, b"x");
    }
    assert_eq!(
        rig.try_push("d", 4, b"x", None),
        Err(AppendError::StoreFull)
    );
    assert!(rig.core.ack("a", 1));
    rig.push("d", 4, b"x");
    assert_eq!(rig.core.stats().rejected_store_full, 1);
}

#[test]
fn a_load_reads_the_payload_back_from_disk() {
    let mut rig = Rig::new(settings());
    rig.push("alice", 1, b"the payload");
    rig.settle();
    assert!(rig.core.load("alice", 1));
    assert!(!rig.core.load("alice", 2));
    rig.settle();
    let events = rig.take_events();
    let loaded = events.iter().find_map(|e| match e {
        StoreEvent::Loaded {
            id: 1,
            payload,
            deliveries: 0,
            stored_unix_ms,
            ..
        } => Some((payload.clone(), *stored_unix_ms)),
        _ => None,
    });
    assert_eq!(loaded, Some((b"the payload".to_vec(), at(0).unix_ms)));
}

#[test]
fn a_failed_write_stops_the_store_and_nothing_after_is_durable() {
    let mut rig = Rig::new(settings());
    rig.push("alice", 1, b"one");
    rig.disk.fail = Some("sync");
    rig.settle();
    let events = rig.take_events();
    assert!(committed(&events).is_none(), "{events:?}");
    assert!(
        events.iter().any(|e| matches!(e, StoreEvent::Failed(_))),
        "{events:?}"
    );
    assert!(matches!(
        rig.try_push("alice", 2, b"two", None),
        Err(AppendError::Failed(_))
    ));
    assert!(rig.take_ops().is_empty());
}

#[test]
fn ram_per_stored_push_is_at_most_64_bytes() {
    // 1M pushes for 100k users, 10 each, as the issue measures it.
    let mut rig = Rig::new(StoreSettings {
        max_pushes: 2_000_000,
        max_bytes: 1 << 40,
        segment_bytes: 64 << 20,
        ..StoreSettings::default()
    });
    let users: Vec<String> = (0..100_000).map(|u| format!("user-{u}")).collect();
    let mut id = 0;
    let mut ops = Vec::new();
    for _ in 0..10 {
        for user in &users {
            id += 1;
            rig.push(user, id, b"{\"n\":1}");
        }
        // The executor takes the bytes away: they are not the index.
        rig.core.take_ops(rig.now, &mut ops);
        for op in ops.drain(..) {
            rig.core
                .on_op_done(rig.now, op.id, crate::store::OpDone::Done);
        }
    }
    let stats = rig.core.stats();
    assert_eq!(stats.pushes, 1_000_000);
    let per_push = stats.ram_bytes as f64 / stats.pushes as f64;
    eprintln!(
        "store RAM: {} bytes for {} pushes of {} users: {per_push:.1} B per push; disk {} B ({:.1} B per push)",
        stats.ram_bytes,
        stats.pushes,
        stats.users,
        stats.disk_bytes,
        stats.disk_bytes as f64 / stats.pushes as f64
    );
    assert!(per_push <= 64.0, "{per_push:.1} B per push");
}

#[test]
fn a_load_of_a_push_not_yet_written_waits_for_its_write() {
    let mut rig = Rig::new(settings());
    rig.push("alice", 1, b"fresh");
    assert!(rig.core.load("alice", 1));
    let ops = rig.take_ops();
    let append = ops
        .iter()
        .position(|o| matches!(o.kind, StoreOpKind::Append { .. }));
    let read = ops
        .iter()
        .position(|o| matches!(o.kind, StoreOpKind::Read { .. }));
    assert!(append.is_some() && read > append, "{ops:?}");
    rig.complete(ops);
    rig.settle();
    assert!(
        rig.take_events()
            .iter()
            .any(|e| matches!(e, StoreEvent::Loaded { id: 1, payload, .. } if payload == b"fresh"))
    );
}
