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
