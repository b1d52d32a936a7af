//! One gateway process holds more client connections than RLIMIT_NOFILE
//! allows it descriptors: client sockets are io_uring direct descriptors
//! (one table per shard's ring), so the process fd table stays small.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use e2e_tests::{Gateway, Holder, fd_count, nofile_limits};

#[test]
fn one_gateway_holds_more_connections_than_its_fd_limit() {
    let (_, hard) = nofile_limits();
    // More than any one process may have fds here, within what 2 shards'
    // tables hold (each is bounded by the same limit).
    let total = (hard as usize + 4_000)
        .min(2 * (hard as usize - 64) - 2_000)
        .max(1_000);
    // The holders connect as fast as they can. On a CI box shared with
    // other tests the handshakes queue up, and this test is about
    // descriptors, not admission, so the handshake cap is out of the way.
    let gw = Gateway::start(
        2,
        "[shard]\nmax_handshakes = 65536\n[protocol]\nheartbeat_default_ms = 120000\nheartbeat_max_ms = 300000\n",
    );
    let per_holder = 8_000;
    let holders: Vec<Holder> = (0..total.div_ceil(per_holder))
        .map(|i| {
            let count = per_holder.min(total - i * per_holder);
            Holder::spawn(
                gw.client,
                &format!("127.0.0.{}", 2 + i),
                count,
                &format!("h{i}"),
                120_000,
            )
        })
        .collect();
    let mut held = 0;
    for h in &holders {
        held += h
            .wait_ready(Duration::from_secs(120))
            .expect("holder failed");
    }
    assert_eq!(held, total);
    let deadline = Instant::now() + Duration::from_secs(30);
    let per_shard = loop {
        let stats = gw.stats();
        let per_shard: Vec<u64> = stats["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["connections"].as_u64().unwrap())
            .collect();
        if per_shard.iter().sum::<u64>() == total as u64 || Instant::now() > deadline {
            break per_shard;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        per_shard.iter().sum::<u64>(),
        total as u64,
        "per shard: {per_shard:?}"
    );
    assert!(per_shard.iter().all(|&n| n > 0), "per shard: {per_shard:?}");
    assert!(
        total as u64 > hard,
        "{total} connections do not exceed RLIMIT_NOFILE {hard} on this host"
    );
    let fds = fd_count(gw.pid());
    assert!(
        fds < 100,
        "gateway has {fds} open fds for {total} connections"
    );
    eprintln!(
        "held {total} connections ({per_shard:?} per shard) with {fds} gateway fds; RLIMIT_NOFILE hard = {hard}"
    );
    drop(holders);
}
