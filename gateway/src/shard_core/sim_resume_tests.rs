//! Resume across the shard cores, with simulated time and no sockets
//! (see `sim`): a session parked on one shard resumed on another by
//! mailbox, and a hand-over that gets no answer.

use bytes::Bytes;
use protocol::client::{ClientConfig, ClientEvent};
use protocol::proto::Welcome;
use std::net::{IpAddr, Ipv4Addr};

use super::BackendCall;
use super::sim::Sim;
use super::sim_tests::subscribe;

fn welcome(sim: &Sim, client: usize) -> Option<Welcome> {
    sim.clients[client].events.iter().find_map(|e| match e {
        ClientEvent::Welcome(w) => Some(w.clone()),
        _ => None,
    })
}

fn resuming(sim: &mut Sim, shard: usize, user: &str, token: Bytes) -> usize {
    let cfg = ClientConfig {
        token: Sim::token(user, None, None),
        resume: token,
        ..ClientConfig::default()
    };
    sim.connect_with(shard, cfg, IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The presence calls shard `shard` made, by kind.
fn presence_calls(sim: &Sim, shard: usize) -> Vec<&'static str> {
    sim.backend_calls
        .iter()
        .filter(|(s, _)| *s == shard)
        .filter_map(|(_, c)| match c {
            BackendCall::Online(_) => Some("online"),
            BackendCall::Offline { .. } => Some("offline"),
            BackendCall::Parked { .. } => Some("parked"),
            BackendCall::Resumed { from: None, .. } => Some("resumed-from-elsewhere"),
            BackendCall::Resumed { from: Some(_), .. } => Some("resumed-here"),
            BackendCall::Handed { .. } => Some("handed"),
            BackendCall::ParkedGone(_) => Some("parked-gone"),
            _ => None,
        })
        .collect()
}

#[test]
fn a_session_parked_on_one_shard_resumes_on_the_other_by_mailbox() {
    let mut sim = Sim::new(2, |c| c.store.resume_window_ms = 5_000);
    let a = sim.connect(0, "rita");
    subscribe(&mut sim, a, "news");
    let wa = welcome(&sim, a).unwrap();
    sim.hang_up(a);
    assert_eq!(sim.cores[0].parked.len(), 1);
    assert_eq!(presence_calls(&sim, 0), ["online", "parked"]);

    let b = resuming(&mut sim, 1, "rita", wa.resume.clone());
    let wb = welcome(&sim, b).expect("welcomed after the hand-over");
    assert!(wb.resumed);
    assert_eq!(sim.cores[0].parked.len(), 0, "given up by shard 0");
    assert_eq!(sim.cores[1].stats.resumes, 1);
    assert_eq!(presence_calls(&sim, 0), ["online", "parked", "handed"]);
    assert_eq!(presence_calls(&sim, 1), ["resumed-from-elsewhere"]);
    // The topic came along: shard 1 has the subscriber now.
    sim.request(
        0,
        "POST",
        "/v1/push",
        r#"{"to":{"topic":"news"},"payload":"moved"}"#,
    );
    sim.run();
    assert_eq!(sim.clients[b].payloads(), ["moved"]);
    // The window passing ends nothing: the session lives on shard 1.
    sim.advance(6_000);
    assert_eq!(presence_calls(&sim, 0), ["online", "parked", "handed"]);
}

#[test]
fn a_hand_over_without_an_answer_starts_fresh_and_the_parked_one_ends_in_time() {
    let mut sim = Sim::new(2, |c| c.store.resume_window_ms = 5_000);
    let a = sim.connect(1, "sam");
    let wa = welcome(&sim, a).unwrap();
    sim.hang_up(a);
    assert_eq!(sim.cores[1].parked.len(), 1);
    // Shard 1 takes no mail: the ask is never answered.
    sim.deaf[1] = true;
    let b = resuming(&mut sim, 0, "sam", wa.resume.clone());
    assert!(
        welcome(&sim, b).is_none(),
        "the Welcome waits for the answer"
    );
    sim.advance(super::resume::RESUME_ASK_MS + 100);
    let wb = welcome(&sim, b).expect("welcomed fresh after the wait");
    assert!(!wb.resumed);
    assert_eq!(sim.cores[0].stats.resumes_missed, 1);
    assert_eq!(presence_calls(&sim, 0), ["online"]);
    // The parked session on shard 1 ends with its window: offline.
    sim.advance(5_000);
    assert_eq!(sim.cores[1].parked.len(), 0);
    assert_eq!(presence_calls(&sim, 1), ["online", "parked", "offline"]);
}

/// Pushes to `to` (a JSON target) through shard `via`, `n` times, with
/// payloads `{prefix}0`, `{prefix}1`, ...
fn push_n(sim: &mut Sim, via: usize, to: &str, prefix: &str, n: usize) {
    for i in 0..n {
        assert_eq!(sim.push(via, to, &format!("{prefix}{i}")), 200);
    }
}

#[test]
fn what_a_parked_session_missed_follows_its_welcome_on_any_shard() {
    let mut sim = Sim::new(3, |c| c.store.resume_window_ms = 5_000);
    let a = sim.connect(0, "mia");
    subscribe(&mut sim, a, "news");
    let wa = welcome(&sim, a).unwrap();
    sim.hang_up(a);
    // While it is away: two topic pushes, a broadcast, and a push to a
    // topic it never had, each through another shard.
    push_n(&mut sim, 1, r#"{"topic":"news"}"#, "n", 2);
    push_n(&mut sim, 2, r#"{"all":true}"#, "all", 1);
    push_n(&mut sim, 1, r#"{"topic":"other"}"#, "x", 1);

    let b = resuming(&mut sim, 2, "mia", wa.resume.clone());
    let wb = welcome(&sim, b).expect("welcomed after the hand-over");
    assert!(wb.resumed && wb.recovered, "{wb:?}");
    assert_eq!(sim.clients[b].payloads(), ["n0", "n1", "all0"]);
    // The Welcome came first.
    assert!(matches!(
        sim.clients[b].events.first(),
        Some(ClientEvent::Welcome(_))
    ));
    assert_eq!(sim.cores[2].stats.resume_replayed, 3);
    // The stand-in left with the session: shard 0 holds "news" no more.
    assert_eq!(sim.cores[0].topics.subscribers("news").count(), 0);
    push_n(&mut sim, 0, r#"{"topic":"news"}"#, "live", 1);
    assert_eq!(sim.clients[b].payloads(), ["n0", "n1", "all0", "live0"]);
}

#[test]
fn a_session_that_missed_too_much_resumes_not_recovered() {
    let mut sim = Sim::new(1, |c| c.store.resume_window_ms = 60_000);
    let a = sim.connect(0, "max");
    subscribe(&mut sim, a, "busy");
    let wa = welcome(&sim, a).unwrap();
    sim.hang_up(a);
    let over = super::resume::missed_bounds().0 + 4;
    push_n(&mut sim, 0, r#"{"topic":"busy"}"#, "p", over);
    let b = resuming(&mut sim, 0, "max", wa.resume.clone());
    let wb = welcome(&sim, b).unwrap();
    assert!(wb.resumed && !wb.recovered, "{wb:?}");
    let got = sim.clients[b].payloads();
    assert_eq!(got.len(), over - 4, "the oldest ones, as many as kept");
    assert_eq!(got.first().map(String::as_str), Some("p0"));
    assert_eq!(sim.cores[0].stats.resume_incomplete, 1);
}

#[test]
fn a_parked_session_that_ends_leaves_its_topics() {
    let mut sim = Sim::new(2, |c| c.store.resume_window_ms = 1_000);
    let a = sim.connect(1, "ned");
    subscribe(&mut sim, a, "t");
    sim.hang_up(a);
    assert_eq!(
        sim.cores[1].topics.subscribers("t").count(),
        1,
        "the stand-in"
    );
    sim.advance(1_500);
    assert_eq!(sim.cores[1].parked.len(), 0);
    assert_eq!(sim.cores[1].topics.subscribers("t").count(), 0);
}
