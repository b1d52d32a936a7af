//! Stress test of the mailboxes and their doorbell protocol: many sender
//! threads, one receiver that parks on a real condition variable between
//! doorbells. Every message must arrive exactly once, in per-sender order,
//! and the receiver must never sleep through mail.

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
