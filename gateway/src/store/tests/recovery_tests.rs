//! Restarts: ids, the rebuilt inboxes, torn tails, corruption, and
//! compaction's effect on disk.

use std::collections::{BTreeMap, BTreeSet};

use super::{Rig, mem_path, recover, settings};
use crate::store::{Delivery, IdBlocks, Recovery, RecoveryError, StoreEvent, Verdict};

/// Hands `ids` every commit the rig reported.
fn feed_commits(rig: &mut Rig, ids: &mut IdBlocks) {
    for e in rig.take_events() {
        if let StoreEvent::Committed { through } = e {
            ids.on_committed(through);
        }
    }
}

/// The next id, reserving and committing as needed.
fn next_id(rig: &mut Rig, ids: &mut IdBlocks) -> u64 {
    for _ in 0..3 {
        ids.refill(&mut rig.core).unwrap();
        if let Some(id) = ids.next_id() {
            return id;
        }
        rig.settle();
        feed_commits(rig, ids);
    }
    panic!("no id after a committed reservation");
}

#[test]
fn push_ids_never_repeat_across_restarts() {
    let mut rig = Rig::new(settings());
    let mut ids = IdBlocks::new(64);
    ids.refill(&mut rig.core).unwrap();
    assert_eq!(
        ids.next_id(),
        None,
        "no id before its reservation is durable"
    );
    let mut seen = BTreeSet::new();
    for n in 0..150 {
        let id = next_id(&mut rig, &mut ids);
        assert!(seen.insert(id), "{id} twice");
        // Some ids go to stored pushes, most only onto the wire.
        if n % 10 == 0 {
            rig.push("alice", id, b"x");
        }
    }
    // A reservation in flight when the power goes is not used.
    ids.refill(&mut rig.core).unwrap();
    let _unfinished = rig.take_ops();
    let (mut after, report) = rig.restart(true);
    let highest = *seen.last().unwrap();
    assert!(
        report.id_floor >= highest,
        "{} < {highest}",
        report.id_floor
    );
    assert!(after.core.id_floor() >= highest);
    let mut ids = IdBlocks::new(64);
    for _ in 0..100 {
        let id = next_id(&mut after, &mut ids);
        assert!(id > highest && seen.insert(id), "{id} repeats");
    }
    // And once more, after the compaction of everything old.
    for id in after.pending_ids("alice") {
        after.core.ack("alice", id);
    }
    after.settle();
    after.advance(1);
    after.settle();
    let highest = *seen.last().unwrap();
    let (mut again, _) = after.restart(true);
    let mut ids = IdBlocks::new(64);
    let id = next_id(&mut again, &mut ids);
    assert!(id > highest, "{id} <= {highest}");
}

#[test]
fn recovery_rebuilds_every_inbox_as_it_was() {
    let mut rig = Rig::new(settings());
    let mut id = 0;
    for round in 0..6 {
        for u in 0..20 {
            id += 1;
            let user = format!("user-{u}");
            rig.try_push(
                &user,
                id,
                format!("push {id}").as_bytes(),
                Some(10_000 + round),
            )
            .unwrap();
            if id % 3 == 0 {
                rig.core.on_delivered(rig.now, &user, id);
            }
            if id % 4 == 0 {
                rig.core.ack(&user, id);
            }
        }
        rig.settle();
    }
    let snapshot = |rig: &Rig| -> BTreeMap<String, Vec<(u64, u16, u64)>> {
        (0..20)
            .map(|u| {
                let user = format!("user-{u}");
                let list = rig
                    .core
                    .pending(&user)
                    .map(|p| (p.id, p.deliveries, p.expires_unix_ms))
                    .collect();
                (user, list)
            })
            .collect()
    };
    let before = snapshot(&rig);
    assert_eq!(rig.core.stats().pushes, 90);
    let (mut after, report) = rig.restart(true);
    assert_eq!(snapshot(&after), before);
    assert_eq!(
        (report.pushes, report.users),
        (90, 15),
        "every 4th user had all acked"
    );
    assert!(report.repaired.is_empty());
    // What was rebuilt reads back.
    assert!(after.core.load("user-0", 1));
    after.settle();
    assert!(
        after.take_events().iter().any(
            |e| matches!(e, StoreEvent::Loaded { id: 1, payload, .. } if payload == b"push 1")
        )
    );
}

/// A store with three pushes for alice, all durable: its disk image.
fn three_pushes() -> (Rig, BTreeMap<u32, Vec<u8>>) {
    let mut rig = Rig::new(settings());
    for id in 1..=3 {
        rig.push("alice", id, b"payload");
    }
    rig.settle();
    let image = rig.disk.image(true);
    (rig, image)
}

#[test]
fn a_torn_tail_is_cut_off_and_reported() {
    let (rig, mut image) = three_pushes();
    let seg = image.get_mut(&1).unwrap();
    let full = seg.len();
    seg.truncate(full - 3);
    let (core, report) = recover(rig.core.settings().clone(), &mut image).unwrap();
    assert_eq!(
        core.pending("alice").map(|p| p.id).collect::<Vec<_>>(),
        [1, 2]
    );
    let torn = &report.repaired[..];
    assert_eq!(torn.len(), 1);
    assert_eq!(torn[0].path, mem_path(1));
    let record = (full - 25) / 3;
    assert_eq!(torn[0].offset as usize, full - record);
    assert_eq!(torn[0].dropped as usize, record - 3);
    assert_eq!(
        image[&1].len(),
        full - record,
        "the file is cut at the torn record"
    );
}

#[test]
fn a_zero_filled_or_half_written_last_record_is_a_torn_tail() {
    let (rig, image) = three_pushes();
    let full = image[&1].len();
    // Zeros after the last record (a size extended before the data).
    let mut zeros = image.clone();
    zeros.get_mut(&1).unwrap().extend_from_slice(&[0; 64]);
    let (core, report) = recover(rig.core.settings().clone(), &mut zeros).unwrap();
    assert_eq!(core.pending_count("alice"), 3);
    assert_eq!(report.repaired[0].offset as usize, full);
    // The last record's bytes garbled: nothing valid after it.
    let mut garbled = image.clone();
    let seg = garbled.get_mut(&1).unwrap();
    seg[full - 2] ^= 0x55;
    let (core, report) = recover(rig.core.settings().clone(), &mut garbled).unwrap();
    assert_eq!(core.pending_count("alice"), 2);
    assert_eq!(report.repaired.len(), 1);
    // A file created whose header never made it is removed.
    let mut empty = image;
    empty.insert(2, b"GWST".to_vec());
    let (_, report) = recover(rig.core.settings().clone(), &mut empty).unwrap();
    assert!(!empty.contains_key(&2));
    assert_eq!(report.repaired[0].path, mem_path(2));
}

#[test]
fn corruption_in_the_middle_is_refused_naming_path_and_offset() {
    let (rig, image) = three_pushes();
    // A flipped bit in the first push: valid records follow it.
    let mut flipped = image.clone();
    flipped.get_mut(&1).unwrap()[30] ^= 0x01;
    let err = recover(rig.core.settings().clone(), &mut flipped).unwrap_err();
    assert!(
        matches!(&err, RecoveryError::Corrupt { path, offset: 25, .. } if *path == mem_path(1)),
        "{err:?}"
    );
    assert!(err.to_string().contains("offset 25"), "{err}");
    // A corrupt length (pointing past the end) in the middle is not a tail.
    let mut long = image.clone();
    long.get_mut(&1).unwrap()[25 + 2] = 0x10;
    let err = recover(rig.core.settings().clone(), &mut long).unwrap_err();
    assert!(
        matches!(err, RecoveryError::Corrupt { offset: 25, .. }),
        "{err:?}"
    );
    // Not a segment at all.
    let mut foreign = image.clone();
    foreign.insert(2, b"PK\x03\x04 something else".to_vec());
    let err = recover(rig.core.settings().clone(), &mut foreign).unwrap_err();
    assert!(
        matches!(&err, RecoveryError::Corrupt { path, offset: 0, .. } if *path == mem_path(2)),
        "{err:?}"
    );
    // A well-summed record of an unknown kind, even last, is refused.
    let mut unknown = image.clone();
    let mut rec = vec![1, 0, 0, 0, 0, 0, 0, 0, 42];
    let mut crc = crc32fast::Hasher::new();
    crc.update(&rec[..4]);
    crc.update(&rec[8..]);
    rec[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
    unknown.get_mut(&1).unwrap().extend_from_slice(&rec);
    assert!(matches!(
        recover(rig.core.settings().clone(), &mut unknown),
        Err(RecoveryError::Corrupt { .. })
    ));
    // Segments out of order are refused too.
    let mut r = Recovery::new(settings());
    assert_eq!(r.feed(5, &mem_path(5), &image[&1]).unwrap(), Verdict::Whole);
    assert!(matches!(
        r.feed(3, &mem_path(3), &image[&1]),
        Err(RecoveryError::OutOfOrder { .. })
    ));
}

#[test]
fn mangled_bytes_never_panic_recovery() {
    let (_, image) = three_pushes();
    let base = image[&1].clone();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2_000 {
        let mut bytes = base.clone();
        for _ in 0..(rand() % 4 + 1) {
            let at = (rand() as usize) % bytes.len();
            bytes[at] = rand() as u8;
        }
        let cut = (rand() as usize) % (bytes.len() + 1);
        bytes.truncate(cut.max(bytes.len() / 2));
        let mut r = Recovery::new(settings());
        if r.feed(1, &mem_path(1), &bytes).is_ok() {
            let (core, report) = r.finish();
            assert!(core.stats().pushes <= 3 && report.pushes <= 3);
        }
    }
}

#[test]
fn compaction_deletes_segments_whose_pushes_are_all_gone() {
    let mut rig = Rig::new(settings());
    for id in 1..=40 {
        rig.push("alice", id, &[7; 500]);
    }
    rig.settle();
    let before = rig.disk.files.len();
    assert!(before >= 5, "{before} segments");
    for id in 1..=40 {
        rig.core.on_delivered(rig.now, "alice", id);
        assert!(rig.core.ack("alice", id));
    }
    rig.settle();
    rig.advance(1);
    rig.settle();
    assert_eq!(rig.disk.files.len(), 1, "{:?}", rig.disk.files.keys());
    let stats = rig.core.stats();
    assert!(stats.segments_removed as usize >= before - 1, "{stats:?}");
    assert_eq!(stats.segments, 1);
    let (after, report) = rig.restart(true);
    assert_eq!((report.pushes, after.core.stats().pushes), (0, 0));
}

#[test]
fn compaction_moves_a_long_lived_push_out_of_the_way() {
    let mut rig = Rig::new(settings());
    rig.push("pinned", 1, b"kept for a long time");
    assert_eq!(
        rig.core.on_delivered(rig.now, "pinned", 1),
        Delivery::Send { deliveries: 1 }
    );
    for id in 2..=80 {
        rig.push("busy", id, &[1; 500]);
        rig.core.ack("busy", id);
    }
    rig.settle();
    rig.advance(1);
    rig.settle();
    let stats = rig.core.stats();
    assert!(stats.rewritten >= 1, "{stats:?}");
    assert!(stats.segments <= 2, "{stats:?}");
    assert!(
        !rig.disk.files.contains_key(&1),
        "the first segment is gone"
    );
    let p: Vec<_> = rig.core.pending("pinned").collect();
    assert_eq!((p.len(), p[0].id, p[0].deliveries), (1, 1, 1));
    assert!(rig.core.load("pinned", 1));
    rig.settle();
    assert!(rig.take_events().iter().any(
        |e| matches!(e, StoreEvent::Loaded { id: 1, payload, .. } if payload == b"kept for a long time")
    ));
    let (after, report) = rig.restart(true);
    assert_eq!(report.pushes, 1);
    let p: Vec<_> = after.core.pending("pinned").collect();
    assert_eq!((p[0].id, p[0].deliveries), (1, 1));
}

#[test]
fn the_fuzz_seeds_are_segments_of_this_format() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/store_recovery");
    let seed = |name: &str| std::fs::read(dir.join(name)).unwrap()[1..].to_vec();
    let mut image = BTreeMap::from([(1, seed("one_segment"))]);
    let (core, report) = recover(settings(), &mut image).unwrap();
    assert!(report.repaired.is_empty());
    let alice: Vec<_> = core
        .pending("alice")
        .map(|p| (p.id, p.deliveries))
        .collect();
    assert_eq!(alice, [(1, 1), (3, 0)]);
    assert_eq!((report.pushes, report.id_floor), (2, 1000));
    let mut image = BTreeMap::from([(1, seed("torn_tail"))]);
    let (_, report) = recover(settings(), &mut image).unwrap();
    assert_eq!(report.repaired.len(), 1);
    let mut image = BTreeMap::from([(1, seed("moved_by_compaction"))]);
    let (core, _) = recover(settings(), &mut image).unwrap();
    assert_eq!(core.pending_count("alice") + core.pending_count("carol"), 2);
}

#[test]
fn a_long_garbage_tail_is_judged_quickly() {
    let (rig, mut image) = three_pushes();
    let full = image[&1].len();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let garbage: Vec<u8> = (0..4 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    image.get_mut(&1).unwrap().extend_from_slice(&garbage);
    let started = std::time::Instant::now();
    let (core, report) = recover(rig.core.settings().clone(), &mut image).unwrap();
    assert_eq!(core.pending_count("alice"), 3);
    assert_eq!(report.repaired[0].offset as usize, full);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// Random appends, deliveries, Acks, ticks and commits, then a power cut
/// in the middle of the executor's work: every push whose commit completed
/// and that nothing removed is back; nothing comes back that was never
/// stored; no delivery count grows; ids stay above everything handed out.
#[test]
fn a_power_cut_anywhere_keeps_every_committed_push() {
    let (mut checked, mut lost_uncommitted) = (0, 0);
    for seed in 1..=40u64 {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut rand = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut rig = Rig::new(settings());
        // (user, id) -> (ticket, deliveries); removed ones leave `live`.
        let mut live: BTreeMap<(String, u64), (crate::store::Ticket, u16)> = BTreeMap::new();
        let mut ever: BTreeSet<(String, u64)> = BTreeSet::new();
        let mut through = crate::store::Ticket(0);
        let mut next_id = 1;
        let mut in_flight: Vec<crate::store::StoreOp> = Vec::new();
        for _ in 0..300 {
            let user = format!("u{}", rand(5));
            match rand(10) {
                0..=3 => {
                    let payload = vec![b'p'; rand(300) as usize];
                    let a = rig.push(&user, next_id, &payload);
                    live.insert((user.clone(), next_id), (a.ticket, 0));
                    ever.insert((user, next_id));
                    next_id += 1;
                }
                4 | 5 => {
                    if let Some(id) = rig.pending_ids(&user).first().copied() {
                        match rig.core.on_delivered(rig.now, &user, id) {
                            Delivery::Send { deliveries } => {
                                if let Some(v) = live.get_mut(&(user.clone(), id)) {
                                    v.1 = deliveries;
                                }
                            }
                            _ => {
                                live.remove(&(user, id));
                            }
                        }
                    }
                }
                6 => {
                    let ids = rig.pending_ids(&user);
                    if !ids.is_empty() {
                        let id = ids[rand(ids.len() as u64) as usize];
                        assert!(rig.core.ack(&user, id));
                        live.remove(&(user, id));
                    }
                }
                7 => rig.advance(rand(150)),
                _ => {
                    // The executor takes a batch and finishes part of it.
                    in_flight.extend(rig.take_ops());
                    let n = rand(in_flight.len() as u64 + 1) as usize;
                    let done: Vec<_> = in_flight.drain(..n).collect();
                    rig.complete(done);
                }
            }
            for e in rig.take_events() {
                match e {
                    StoreEvent::Committed { through: t } => through = through.max(t),
                    StoreEvent::DeadLettered { user, id, .. }
                    | StoreEvent::Expired { user, id, .. } => {
                        live.remove(&(user.to_string(), id));
                    }
                    _ => {}
                }
            }
        }
        // The power goes with `in_flight` half done.
        let n = rand(in_flight.len() as u64 + 1) as usize;
        let done: Vec<_> = in_flight.drain(..n).collect();
        for op in &done {
            rig.disk.perform(op);
        }
        let (after, _) = rig.restart(true);
        for ((user, id), (ticket, deliveries)) in &live {
            let found = after.core.pending(user).find(|p| p.id == *id);
            if found.is_none() {
                lost_uncommitted += 1;
            }
            if *ticket <= through {
                checked += 1;
                let p =
                    found.unwrap_or_else(|| panic!("seed {seed}: committed push {user}/{id} lost"));
                assert!(
                    p.deliveries <= *deliveries,
                    "seed {seed}: {user}/{id} count grew"
                );
            }
        }
        for u in 0..5 {
            let user = format!("u{u}");
            for p in after.core.pending(&user) {
                assert!(
                    ever.contains(&(user.clone(), p.id)),
                    "seed {seed}: phantom {user}/{}",
                    p.id
                );
            }
        }
    }
    // The runs did check committed pushes, and did cut uncommitted ones.
    assert!(
        checked > 100 && lost_uncommitted > 0,
        "{checked} {lost_uncommitted}"
    );
}
