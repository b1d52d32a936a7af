//! MQTT sessions across the shard cores, with simulated time and no
//! sockets (see `sim`, `sim_mqtt`): wildcard filters reached from any
//! shard and left cleanly, keep-alive in simulated time, a persistent
//! session taken from one shard to another, and the QoS 1 window.

use super::sim::Sim;
use super::sim_mqtt::MqttSeen;

/// The push answer's `online` count of a topic push through `via`.
fn push_topic(sim: &mut Sim, via: usize, topic: &str, payload: &str) -> u64 {
    let body = format!(r#"{{"to":{{"topic":"{topic}"}},"payload":"{payload}"}}"#);
    let caller = sim.request(via, "POST", "/v1/push", &body);
    let (status, answer) = sim.answer(caller).expect("answered");
    assert_eq!(status, 200, "{answer}");
    answer["online"].as_u64().unwrap_or(0)
}

#[test]
fn a_wildcard_filter_on_one_shard_gets_topic_pushes_from_every_shard_until_left() {
    let mut sim = Sim::new(3, |_| {});
    let c = sim.connect_mqtt(2, "wanda", "w-1", true, 30);
    assert_eq!(sim.mqtt_seen(c), [MqttSeen::ConnAck(false, 0)]);
    sim.mqtt_subscribe(c, 1, &["a/+/c", "b/#", "$gateway/user/wanda"]);
    assert_eq!(sim.mqtt_seen(c)[1], MqttSeen::SubAck(vec![1, 1, 1]));
    // Every shard's topic owner learnt that shard 2 holds filters.
    for core in &sim.cores {
        assert_eq!(core.router.wildcard_shards(), [2]);
    }
    for via in 0..3 {
        assert_eq!(push_topic(&mut sim, via, "a/x/c", &format!("via{via}")), 1);
    }
    assert_eq!(push_topic(&mut sim, 0, "a/x", "no"), 0, "one level short");
    assert_eq!(
        push_topic(&mut sim, 1, "b", "parent"),
        1,
        "# matches its parent"
    );
    let got = sim.clients[c].mqtt.as_ref().unwrap().publishes();
    let payloads: Vec<&str> = got.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(payloads, ["via0", "via1", "via2", "parent"]);
    assert_eq!(got[0].0, "a/x/c");

    sim.mqtt_unsubscribe(c, 2, &["a/+/c", "b/#"]);
    assert_eq!(sim.mqtt_seen(c).last(), Some(&MqttSeen::UnsubAck));
    assert!(sim.cores[2].filters.is_empty());
    for core in &sim.cores {
        assert!(core.router.wildcard_shards().is_empty(), "left everywhere");
    }
    assert_eq!(push_topic(&mut sim, 0, "a/x/c", "gone"), 0);
}

#[test]
fn a_session_ending_leaves_its_filters_and_the_shards_stop_visiting() {
    let mut sim = Sim::new(2, |c| c.store.resume_window_ms = 0);
    let c = sim.connect_mqtt(1, "wes", "", true, 30);
    sim.mqtt_subscribe(c, 1, &["x/#"]);
    assert_eq!(push_topic(&mut sim, 0, "x/y", "one"), 1);
    sim.hang_up(c);
    assert!(
        sim.cores[1].filters.is_empty(),
        "reclaimed with the session"
    );
    for core in &sim.cores {
        assert!(
            core.router.wildcard_shards().is_empty(),
            "no shard visits it"
        );
    }
    assert_eq!(push_topic(&mut sim, 0, "x/y", "two"), 0);
}

#[test]
fn keep_alive_is_kept_by_pings_and_silence_past_one_and_a_half_times_closes() {
    let mut sim = Sim::new(1, |c| c.protocol.heartbeat_min_ms = 1_000);
    let c = sim.connect_mqtt(0, "kai", "k-1", true, 10);
    for _ in 0..3 {
        sim.advance(9_000);
        let mut ping = Vec::new();
        protocol::mqtt::encode::encode_pingreq(&mut ping);
        sim.clients[c].write(ping);
        sim.run();
    }
    assert!(!sim.clients[c].closed);
    let pongs = sim
        .mqtt_seen(c)
        .iter()
        .filter(|s| **s == MqttSeen::PingResp)
        .count();
    assert_eq!(pongs, 3);
    sim.advance(14_000);
    assert!(!sim.clients[c].closed, "within 1.5 x 10 s");
    sim.advance(2_000);
    assert!(sim.clients[c].closed, "silent past 15 s");
    assert_eq!(sim.cores[0].stats.idle_timeouts, 1);
}

#[test]
fn a_persistent_session_parked_on_one_shard_is_found_from_another() {
    let mut sim = Sim::new(3, |c| c.store.resume_window_ms = 5_000);
    let a = sim.connect_mqtt(0, "petra", "phone", false, 30);
    sim.mqtt_subscribe(a, 1, &["news", "sport/+"]);
    sim.hang_up(a);
    assert_eq!(sim.cores[0].parked.len(), 1);

    // Another user with the same client id gets a fresh session.
    let m = sim.connect_mqtt(2, "mallory", "phone", false, 30);
    assert_eq!(sim.mqtt_seen(m), [MqttSeen::ConnAck(false, 0)]);

    let b = sim.connect_mqtt(1, "petra", "phone", false, 30);
    assert_eq!(
        sim.mqtt_seen(b),
        [MqttSeen::ConnAck(true, 0)],
        "session present"
    );
    assert_eq!(sim.cores[0].parked.len(), 0, "handed over");
    assert_eq!(push_topic(&mut sim, 2, "news", "n"), 1);
    assert_eq!(push_topic(&mut sim, 2, "sport/ski", "s"), 1);
    let got = sim.clients[b].mqtt.as_ref().unwrap().publishes();
    assert_eq!(
        got,
        [
            ("news".into(), "n".into()),
            ("sport/ski".into(), "s".into())
        ]
    );

    // Past the window nothing is found: a fresh session.
    sim.hang_up(b);
    sim.advance(6_000);
    let c = sim.connect_mqtt(2, "petra", "phone", false, 30);
    assert_eq!(sim.mqtt_seen(c), [MqttSeen::ConnAck(false, 0)]);
    assert_eq!(
        sim.cores
            .iter()
            .map(|c| c.mqtt_sessions.owner_entries())
            .sum::<usize>(),
        0
    );
}

#[test]
fn a_clean_session_discards_what_was_parked_for_its_client_id() {
    let mut sim = Sim::new(2, |c| c.store.resume_window_ms = 5_000);
    let a = sim.connect_mqtt(0, "carl", "tab", false, 30);
    sim.mqtt_subscribe(a, 1, &["t"]);
    sim.hang_up(a);
    let b = sim.connect_mqtt(1, "carl", "tab", true, 30);
    assert_eq!(sim.mqtt_seen(b), [MqttSeen::ConnAck(false, 0)]);
    assert_eq!(sim.cores[0].parked.len(), 0, "discarded");
    assert_eq!(
        push_topic(&mut sim, 0, "t", "x"),
        0,
        "its subscription went with it"
    );
    let c = sim.connect_mqtt(0, "carl", "tab", false, 30);
    assert_eq!(
        sim.mqtt_seen(c),
        [MqttSeen::ConnAck(false, 0)],
        "nothing left to resume"
    );
}

#[test]
fn a_second_connection_with_the_same_client_id_takes_the_session_over() {
    let mut sim = Sim::new(3, |c| c.store.resume_window_ms = 0);
    let old = sim.connect_mqtt(0, "tom", "car", true, 30);
    let other_user = sim.connect_mqtt(0, "una", "car", true, 30);
    let other_id = sim.connect_mqtt(2, "tom", "bike", true, 30);
    let new = sim.connect_mqtt(1, "tom", "car", true, 30);
    assert_eq!(sim.mqtt_seen(new), [MqttSeen::ConnAck(false, 0)]);
    assert!(sim.clients[old].closed, "the old connection is closed");
    assert!(!sim.clients[new].closed);
    assert!(!sim.clients[other_user].closed, "client ids are per user");
    assert!(
        !sim.clients[other_id].closed,
        "another client id of the user"
    );
    assert_eq!(sim.cores[0].stats.mqtt_takeovers, 1);
}
