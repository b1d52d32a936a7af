//! Stress test of the mailboxes and their doorbell protocol: many sender
//! threads, one receiver that parks on a real condition variable between
//! doorbells. Every message must arrive exactly once, in per-sender order,
//! and the receiver must never sleep through mail. And all-to-all: every
//! shard sends to every other through small inboxes while draining its
//! own, and each pair's messages arrive once and in order.

// A poisoned lock or a failed join here must fail the test.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use shard_router::mailbox::{Doorbell, Mailboxes};

/// A doorbell the receiver sleeps on (stands in for the eventfd).
#[derive(Default)]
struct ParkingBell {
    rung: Mutex<bool>,
    cv: Condvar,
}

impl Doorbell for ParkingBell {
    fn ring(&self, _to: usize) {
        let mut rung = self.rung.lock().unwrap();
        *rung = true;
        self.cv.notify_one();
    }
}

#[test]
fn every_message_arrives_exactly_once_in_sender_order() {
    const SENDERS: usize = 7;
    const PER_SENDER: u64 = 50_000;
    let shards = SENDERS + 1;
    let receiver = SENDERS;
    let boxes = Arc::new(Mailboxes::<u64>::new(shards, 64));
    let bell = Arc::new(ParkingBell::default());
    let done = Arc::new(AtomicBool::new(false));

    let senders: Vec<_> = (0..SENDERS)
        .map(|from| {
            let (boxes, bell) = (boxes.clone(), bell.clone());
            std::thread::spawn(move || {
                for i in 0..PER_SENDER {
                    let mut msg = i;
                    // A full mailbox is backpressure: keep the message, retry.
                    while let Err(back) = boxes.send(from, receiver, msg, &*bell) {
                        msg = back;
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();

    let rx = {
        let (boxes, bell, done) = (boxes.clone(), bell.clone(), done.clone());
        std::thread::spawn(move || {
            let mut next = vec![0u64; SENDERS];
            let mut total = 0u64;
            loop {
                {
                    // Park until the doorbell rings (bounded, to fail loudly
                    // rather than hang if a wake-up is ever lost).
                    let mut rung = bell.rung.lock().unwrap();
                    while !*rung {
                        let (g, timeout) =
                            bell.cv.wait_timeout(rung, Duration::from_secs(10)).unwrap();
                        rung = g;
                        assert!(
                            !timeout.timed_out() || done.load(Ordering::SeqCst),
                            "lost wake-up: parked with mail waiting"
                        );
                        if timeout.timed_out() {
                            break;
                        }
                    }
                    *rung = false;
                }
                boxes.drain(receiver, |from, v| {
                    assert_eq!(v, next[from], "sender {from} out of order");
                    next[from] += 1;
                    total += 1;
                });
                if total == SENDERS as u64 * PER_SENDER {
                    return (total, next);
                }
            }
        })
    };

    for s in senders {
        s.join().unwrap();
    }
    let (total, next) = rx.join().unwrap();
    done.store(true, Ordering::SeqCst);
    assert_eq!(total, SENDERS as u64 * PER_SENDER);
    assert!(next.iter().all(|&n| n == PER_SENDER));
    assert_eq!(boxes.depth(receiver), 0);
}

/// A doorbell per shard: a flag the shard's thread polls (stands in for
/// each shard's eventfd).
#[derive(Default)]
struct Flags(Vec<AtomicBool>);

impl Doorbell for Flags {
    fn ring(&self, to: usize) {
        self.0[to].store(true, Ordering::SeqCst);
    }
}

#[test]
fn all_to_all_keeps_each_pairs_order_through_full_inboxes() {
    // Every shard sends to every other one and drains its own inbox, as
    // shards do: a full inbox is retried after draining (no deadlock).
    const SHARDS: usize = 4;
    const PER_PAIR: u64 = 20_000;
    let boxes = Arc::new(Mailboxes::<(usize, u64)>::new(SHARDS, 32));
    let bells = Arc::new(Flags((0..SHARDS).map(|_| AtomicBool::new(false)).collect()));
    let threads: Vec<_> = (0..SHARDS)
        .map(|me| {
            let (boxes, bells) = (boxes.clone(), bells.clone());
            std::thread::spawn(move || {
                let mut next_out = [0u64; SHARDS];
                let mut next_in = vec![0u64; SHARDS];
                let want = PER_PAIR * (SHARDS as u64 - 1);
                let mut got = 0u64;
                let started = std::time::Instant::now();
                while got < want
                    || next_out
                        .iter()
                        .enumerate()
                        .any(|(to, &n)| to != me && n < PER_PAIR)
                {
                    assert!(started.elapsed() < Duration::from_secs(60), "stuck");
                    for to in (0..SHARDS).filter(|&to| to != me) {
                        while next_out[to] < PER_PAIR {
                            if boxes.send(me, to, (me, next_out[to]), &*bells).is_err() {
                                break;
                            }
                            next_out[to] += 1;
                        }
                    }
                    if bells.0[me].swap(false, Ordering::SeqCst) || got < want {
                        boxes.drain(me, |from, (sender, seq)| {
                            assert_eq!(from, sender, "sender named");
                            assert_eq!(seq, next_in[from], "{from} -> {me} out of order");
                            next_in[from] += 1;
                            got += 1;
                        });
                    }
                    std::thread::yield_now();
                }
                assert_eq!(got, want);
                next_in
            })
        })
        .collect();
    for (me, t) in threads.into_iter().enumerate() {
        let next_in = t.join().unwrap();
        for (from, n) in next_in.into_iter().enumerate() {
            assert_eq!(n, if from == me { 0 } else { PER_PAIR });
        }
    }
    for me in 0..SHARDS {
        assert_eq!(boxes.depth(me), 0);
    }
}
