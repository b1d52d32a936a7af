//! WebSocket connections in the shard cores, with simulated time and no
//! sockets (see `sim`): the upgrade, pushes in binary messages, what an
//! idle connection holds, the close handshake and timeouts.

use protocol::client::ClientEvent;

use super::sim::Sim;

fn welcomed(sim: &Sim, client: usize) -> bool {
    sim.clients[client]
        .events
        .iter()
        .any(|e| matches!(e, ClientEvent::Welcome(_)))
}

#[test]
fn a_pipelined_upgrade_and_hello_get_the_101_and_the_welcome() {
    let mut sim = Sim::new(1, |_| {});
    let c = sim.connect_ws(0, "wendy");
    let ws = sim.clients[c].ws.as_ref().unwrap();
    assert!(ws.frames.is_some(), "upgraded");
    assert!(welcomed(&sim, c), "{:?}", sim.clients[c].events);
    assert_eq!(sim.cores[0].stats.ws_upgrades, 1);
    // Between messages the connection holds nothing in the table.
    assert_eq!(sim.cores[0].ws.held_len(), 0);
}

#[test]
fn a_broadcast_reaches_websocket_and_raw_clients_alike() {
    let mut sim = Sim::new(2, |_| {});
    let ws: Vec<usize> = (0..4)
        .map(|i| sim.connect_ws(i % 2, &format!("w{i}")))
        .collect();
    let raw: Vec<usize> = (0..4)
        .map(|i| sim.connect(i % 2, &format!("r{i}")))
        .collect();
    assert_eq!(sim.push(0, r#"{"all":true}"#, "hello"), 200);
    sim.run();
    for c in ws.iter().chain(&raw) {
        assert_eq!(sim.clients[*c].payloads(), ["hello"], "client {c}");
    }
    for core in &sim.cores {
        assert_eq!(core.ws.held_len(), 0);
    }
}

#[test]
fn a_head_split_across_reads_is_held_only_until_it_completes() {
    let mut sim = Sim::new(1, |_| {});
    let (request, key) = protocol::ws::client::upgrade_request("sim", "/", [3; 16]);
    // The first read carries half the head only.
    let (first, rest) = request.split_at(request.len() / 2);
    let c = sim.connect_ws_request(0, "split", first.to_vec(), key);
    assert_eq!(sim.cores[0].ws.held_len(), 1, "half a head is held");
    assert!(!welcomed(&sim, c));
    // The rest; the Hello follows the 101.
    sim.clients[c].write_wire(rest.to_vec());
    sim.run();
    assert!(welcomed(&sim, c), "{:?}", sim.clients[c].events);
    assert_eq!(sim.cores[0].ws.held_len(), 0);
}

#[test]
fn a_refused_upgrade_is_answered_and_closed_and_its_slot_freed() {
    let mut sim = Sim::new(1, |_| {});
    let request = b"GET / HTTP/1.1\r\nHost: sim\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: gateway.v1\r\n\r\n".to_vec();
    let c = sim.connect_ws_request(0, "nokey", request, "unused".into());
    sim.advance(1_000);
    assert_eq!(sim.clients[c].ws.as_ref().unwrap().refused, Some(400));
    assert!(sim.clients[c].closed);
    assert!(
        !welcomed(&sim, c),
        "the Hello behind a refused upgrade is not read"
    );
    assert_eq!(sim.cores[0].connections(), 0);
    assert_eq!(sim.cores[0].stats.ws_upgrades_refused, 1);
}

#[test]
fn an_upgrade_that_never_completes_times_out_and_its_head_is_dropped() {
    let mut sim = Sim::new(1, |_| {});
    let c = sim.connect_ws_request(0, "stalled", b"GET / HTTP/1.1\r\nHo".to_vec(), "k".into());
    assert_eq!(sim.cores[0].ws.held_len(), 1);
    let timeout = u64::from(sim.cores[0].settings.server.handshake_timeout_ms);
    sim.advance(timeout + 2_000);
    assert!(sim.clients[c].closed);
    assert_eq!(sim.cores[0].connections(), 0);
    assert_eq!(
        sim.cores[0].ws.held_len(),
        0,
        "reclaimed with the connection"
    );
    assert_eq!(sim.cores[0].stats.handshakes_timeout, 1);
}

#[test]
fn a_bye_ends_with_a_normal_close_frame() {
    let mut sim = Sim::new(1, |_| {});
    let c = sim.connect_ws(0, "leaver");
    let mut bye = Vec::new();
    sim.clients[c].session.bye(&mut bye);
    sim.clients[c].write(bye);
    sim.advance(1_000);
    assert_eq!(
        sim.clients[c].ws.as_ref().unwrap().close_code(),
        Some(Some(1000))
    );
    assert!(sim.clients[c].closed);
    assert_eq!(sim.cores[0].connections(), 0);
}
