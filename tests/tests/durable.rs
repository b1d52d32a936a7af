//! End-to-end tests of durable pushes (`"ack": true` to users): the real
//! gateway with its embedded store, real clients, the push API over real
//! HTTP. Stored before the answer, delivered when the user connects,
//! removed on the first Ack, redelivered after the Ack timeout and on
//! reconnect, dead-lettered after `max_deliveries`, kept across a SIGKILL.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use e2e_tests::{Client, Gateway, PyBackend, TempDir, http};
use protocol::proto::Push;
use serde_json::{Value, json};

fn post(gw: &Gateway, body: &Value) -> (u16, Value) {
    let (status, text) = http(gw.control, "POST", "/v1/push", &body.to_string()).expect("request");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn durable(gw: &Gateway, user: &str, payload: &str) -> Value {
    let (status, body) = post(
        gw,
        &json!({"to": {"user": user}, "payload": payload, "ack": true}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stored"], json!(true), "{body}");
    body
}

fn ack(c: &mut Client, p: &Push) {
    let id = p.id;
    c.send_with(|s, out| s.ack(vec![id], out));
}

/// Every push arriving within `window`.
fn pushes_within(c: &mut Client, window: Duration) -> Vec<Push> {
    let deadline = Instant::now() + window;
    let mut got = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match c.next_push(left) {
            Some(p) => got.push(p),
            None => break,
        }
    }
    got
}

#[test]
fn a_push_to_an_offline_user_is_stored_and_arrives_when_the_user_connects() {
    let gw = Gateway::start(2, "");
    let body = durable(&gw, "later", "kept for you");
    assert_eq!(body["online"], json!(0), "{body}");
    let id = body["id"].as_u64().unwrap();
    let mut c = Client::established(gw.client, "later");
    let p = c
        .next_push(Duration::from_secs(5))
        .expect("the stored push");
    assert_eq!(
        (p.id, &p.payload[..], p.ack, p.redelivery),
        (id, &b"kept for you"[..], true, false)
    );
    ack(&mut c, &p);
    assert_eq!(gw.wait_total("store_acked", 1), 1);
    assert_eq!(gw.wait_total("store_pushes", 0), 0);
    drop(c);
    let mut again = Client::established(gw.client, "later");
    assert!(
        pushes_within(&mut again, Duration::from_millis(400)).is_empty(),
        "an acked push came back"
    );
}

#[test]
fn the_inbox_goes_out_in_id_order_before_later_pushes() {
    let gw = Gateway::start(2, "");
    let ids: Vec<u64> = (0..5)
        .map(|i| {
            durable(&gw, "ordered", &format!("m{i}"))["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let mut c = Client::established(gw.client, "ordered");
    let first = pushes_within(&mut c, Duration::from_secs(2));
    let got: Vec<u64> = first.iter().map(|p| p.id).collect();
    assert_eq!(got, ids);
    let live = durable(&gw, "ordered", "live");
    assert_eq!(live["online"], json!(1), "{live}");
    let live = live["id"].as_u64().unwrap();
    let p = c.next_push(Duration::from_secs(2)).expect("the live push");
    assert_eq!(p.id, live);
}

#[test]
fn an_unacked_push_is_redelivered_after_the_ack_timeout_and_on_reconnect() {
    let gw = Gateway::start(2, "[store]\nack_timeout_ms = 300\n");
    let mut c = Client::established(gw.client, "slow");
    let body = durable(&gw, "slow", "ack me");
    assert_eq!(body["online"], json!(1), "{body}");
    let first = c.next_push(Duration::from_secs(2)).expect("first delivery");
    assert!(!first.redelivery);
    // The copies sent after the Ack timeout reach the session, which
    // hands the app each id once.
    let redelivered = gw.wait_total_until("store_redelivered", Duration::from_secs(5), |v| v >= 1);
    assert!(redelivered >= 1, "no redelivery after the Ack timeout");
    assert!(
        pushes_within(&mut c, Duration::from_millis(300)).is_empty(),
        "the app saw a copy twice"
    );
    drop(c);
    let mut back = Client::established(gw.client, "slow");
    let on_reconnect = back
        .next_push(Duration::from_secs(2))
        .expect("redelivery on reconnect");
    assert_eq!(on_reconnect.id, first.id);
    assert!(on_reconnect.redelivery);
    ack(&mut back, &on_reconnect);
    assert_eq!(gw.wait_total("store_acked", 1), 1);
    assert!(
        pushes_within(&mut back, Duration::from_millis(800)).is_empty(),
        "an acked push came back"
    );
    let after = gw.wait_total_until("store_redelivered", Duration::from_secs(5), |v| {
        v > redelivered
    });
    assert!(after > redelivered, "no redelivery on reconnect");
}

#[test]
fn a_client_that_never_acks_is_dead_lettered_after_max_deliveries() {
    let sink = PyBackend::start();
    let gw = Gateway::start(
        2,
        &(sink.events_config() + "[store]\nack_timeout_ms = 100\nmax_deliveries = 3\n"),
    );
    let mut c = Client::established(gw.client, "deaf");
    let id = durable(&gw, "deaf", "ignored")["id"].as_u64().unwrap();
    let got = pushes_within(&mut c, Duration::from_millis(500));
    assert_eq!(
        got.iter().map(|p| p.id).collect::<Vec<_>>(),
        [id],
        "the app sees it once"
    );
    assert_eq!(gw.wait_total("store_dead_lettered", 1), 1);
    assert_eq!(gw.total("store_delivered"), 3);
    // Dead: no more deliveries, however long the client stays.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(gw.total("store_delivered"), 3);
    assert_eq!(gw.total("store_pushes"), 0);
    // The events backend hears of it, once.
    let events = sink.wait_event(Duration::from_secs(5), |e| e["type"] == "undelivered");
    let undelivered: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "undelivered")
        .collect();
    assert_eq!(undelivered.len(), 1, "{events:?}");
    let e = undelivered[0];
    assert_eq!(e["user"], "deaf", "{e}");
    assert_eq!(e["id"].as_u64(), Some(id), "{e}");
    assert_eq!(e["deliveries"], 3, "{e}");
    assert_eq!(e["reason"], "max_deliveries", "{e}");
}

#[test]
fn a_push_past_its_ttl_is_removed_and_reported_undelivered() {
    let sink = PyBackend::start();
    let gw = Gateway::start(2, &sink.events_config());
    let (status, body) = post(
        &gw,
        &json!({"to": {"user": "away"}, "payload": "brief", "ack": true, "ttl_ms": 200}),
    );
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_u64().unwrap();
    let keep = durable(&gw, "away", "kept")["id"].as_u64().unwrap();
    assert_eq!(gw.wait_total("store_expired", 1), 1);
    let events = sink.wait_event(Duration::from_secs(5), |e| e["type"] == "undelivered");
    let e = events.iter().find(|e| e["type"] == "undelivered").unwrap();
    assert_eq!(e["id"].as_u64(), Some(id), "{e}");
    assert_eq!(e["reason"], "expired", "{e}");
    assert_eq!(e["deliveries"], 0, "{e}");
    // The push with the default TTL is still there for the user.
    let mut c = Client::established(gw.client, "away");
    let got = pushes_within(&mut c, Duration::from_millis(500));
    assert_eq!(got.iter().map(|p| p.id).collect::<Vec<_>>(), [keep]);
}

#[test]
fn a_full_inbox_refuses_with_507_or_drops_the_oldest() {
    let gw = Gateway::start(2, "[store]\nuser_max_pushes = 2\n");
    durable(&gw, "full", "a");
    durable(&gw, "full", "b");
    let (status, body) = post(
        &gw,
        &json!({"to": {"user": "full"}, "payload": "c", "ack": true}),
    );
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["stored"], json!(false), "{body}");
    assert!(body["error"].as_str().unwrap().contains("full"), "{body}");
    let gw = Gateway::start(
        2,
        "[store]\nuser_max_pushes = 2\ninbox_overflow = \"drop-oldest\"\n",
    );
    for m in ["a", "b", "c"] {
        durable(&gw, "full", m);
    }
    let mut c = Client::established(gw.client, "full");
    let got: Vec<Vec<u8>> = pushes_within(&mut c, Duration::from_secs(1))
        .into_iter()
        .map(|p| p.payload.to_vec())
        .collect();
    assert_eq!(got, [b"b".to_vec(), b"c".to_vec()]);
    assert_eq!(gw.wait_total("store_dropped", 1), 1);
}

#[test]
fn stored_pushes_survive_a_sigkill_of_the_gateway() {
    let data = TempDir::new("durable-kill");
    let mut gw = Gateway::start_with_data(2, "", &data.0);
    let mut ids = Vec::new();
    for u in 0..8 {
        for m in 0..3 {
            let body = durable(&gw, &format!("k{u}"), &format!("{u}/{m}"));
            ids.push(body["id"].as_u64().unwrap());
        }
    }
    gw.signal(libc::SIGKILL);
    assert!(gw.wait_exit(Duration::from_secs(5)).is_some());
    drop(gw);
    let gw = Gateway::start_with_data(2, "", &data.0);
    let fresh = durable(&gw, "k0", "after")["id"].as_u64().unwrap();
    assert!(
        ids.iter().all(|&id| id < fresh),
        "ids repeat across restarts"
    );
    let mut got = Vec::new();
    for u in 0..8 {
        let mut c = Client::established(gw.client, &format!("k{u}"));
        let want = if u == 0 { 4 } else { 3 };
        let ps = pushes_within(&mut c, Duration::from_secs(2));
        assert_eq!(ps.len(), want, "user k{u}: {ps:?}");
        got.extend(ps.iter().map(|p| p.id).filter(|&id| id != fresh));
    }
    got.sort_unstable();
    assert_eq!(got, ids);
}

fn get(gw: &Gateway, method: &str, path: &str) -> (u16, Value) {
    let (status, text) = http(gw.control, method, path, "").expect("request");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn the_inbox_is_shown_listed_and_purged_through_the_control_api() {
    let gw = Gateway::start(2, "");
    let ids: Vec<u64> = ["one", "two", "three"]
        .iter()
        .map(|m| durable(&gw, "inspect", m)["id"].as_u64().unwrap())
        .collect();

    let (status, user) = get(&gw, "GET", "/v1/users/inspect");
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["pending"], 3, "{user}");
    assert_eq!(user["sessions"], json!([]), "{user}");

    let (status, inbox) = get(&gw, "GET", "/v1/users/inspect/inbox");
    assert_eq!(status, 200, "{inbox}");
    assert_eq!(inbox["pending"], 3, "{inbox}");
    assert_eq!(inbox["more"], false, "{inbox}");
    let pushes = inbox["pushes"].as_array().unwrap();
    let listed: Vec<u64> = pushes.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(listed, ids, "oldest first");
    for p in pushes {
        assert_eq!(p["deliveries"], 0, "{p}");
        assert_eq!(p["in_flight"], false, "{p}");
        assert!(p["bytes"].as_u64().unwrap() > 0, "{p}");
        // The default TTL is days.
        assert!(p["expires_in_ms"].as_u64().unwrap() > 3_600_000, "{p}");
    }
    let sum: u64 = pushes.iter().map(|p| p["bytes"].as_u64().unwrap()).sum();
    assert_eq!(inbox["bytes"].as_u64(), Some(sum), "{inbox}");

    let (_, two) = get(&gw, "GET", "/v1/users/inspect/inbox?limit=2");
    assert_eq!(two["pushes"].as_array().unwrap().len(), 2, "{two}");
    assert_eq!(two["more"], true, "{two}");
    let (status, bad) = get(&gw, "GET", "/v1/users/inspect/inbox?limit=0");
    assert_eq!(status, 400, "{bad}");
    let (status, bad) = get(&gw, "POST", "/v1/users/inspect/inbox");
    assert_eq!(status, 405, "{bad}");

    let (status, purged) = get(&gw, "DELETE", "/v1/users/inspect/inbox");
    assert_eq!(status, 200, "{purged}");
    assert_eq!(purged["purged"], 3, "{purged}");
    let (_, user) = get(&gw, "GET", "/v1/users/inspect");
    assert_eq!(user["pending"], 0, "{user}");
    assert_eq!(gw.total("store_pushes"), 0);
    // Nothing is left to deliver.
    let mut c = Client::established(gw.client, "inspect");
    assert!(pushes_within(&mut c, Duration::from_millis(400)).is_empty());
    // An unknown user has an empty inbox, not an error.
    let (status, none) = get(&gw, "GET", "/v1/users/nobody/inbox");
    assert_eq!(status, 200, "{none}");
    assert_eq!(none["pending"], 0, "{none}");
}

/// The newest segment file under `data` (any shard) that holds `needle`.
fn segment_holding(data: &std::path::Path, needle: &[u8]) -> std::path::PathBuf {
    let mut found = None;
    for shard in std::fs::read_dir(data).unwrap() {
        let shard = shard.unwrap().path();
        if !shard.is_dir() {
            continue;
        }
        let mut segs: Vec<_> = std::fs::read_dir(&shard)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        segs.sort();
        for seg in segs {
            let bytes = std::fs::read(&seg).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found = Some(seg);
            }
        }
    }
    found.unwrap_or_else(|| panic!("no segment under {} holds {needle:?}", data.display()))
}

#[test]
fn a_torn_store_file_is_cut_at_its_last_whole_record_and_corruption_refuses_the_start() {
    let data = TempDir::new("durable-torn");
    let mut gw = Gateway::start_with_data(2, "", &data.0);
    let ids: Vec<u64> = (0..4)
        .map(|m| {
            durable(&gw, "torn", &format!("torn-payload-{m}"))["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    gw.signal(libc::SIGKILL);
    assert!(gw.wait_exit(Duration::from_secs(5)).is_some());
    drop(gw);

    // Tear the last append, as a crash in the middle of a write would.
    let seg = segment_holding(&data.0, b"torn-payload-3");
    let len = std::fs::metadata(&seg).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    file.set_len(len - 3).unwrap();
    drop(file);

    let mut gw = Gateway::start_with_data(2, "", &data.0);
    let log = gw.log();
    assert!(
        log.contains("torn tail") && log.contains(&seg.display().to_string()),
        "the repair names the file:\n{log}"
    );
    let (_, user) = get(&gw, "GET", "/v1/users/torn");
    assert_eq!(
        user["pending"], 3,
        "the torn push is gone, the others kept: {user}"
    );
    let mut c = Client::established(gw.client, "torn");
    let got: Vec<u64> = pushes_within(&mut c, Duration::from_secs(1))
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(got, ids[..3]);
    drop(c);
    gw.signal(libc::SIGKILL);
    assert!(gw.wait_exit(Duration::from_secs(5)).is_some());
    drop(gw);

    // A damaged byte before the last record is corruption, not a torn
    // tail: the gateway refuses to start and says where.
    let seg = segment_holding(&data.0, b"torn-payload-0");
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes
        .windows(b"torn-payload-0".len())
        .position(|w| w == b"torn-payload-0")
        .unwrap();
    bytes[at] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let out = std::process::Command::new(e2e_tests::binary("gateway"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
            "--shards",
            "2",
        ])
        .arg("--data-dir")
        .arg(&data.0)
        .env("GATEWAY_JWT_SECRET", e2e_tests::SECRET)
        .env("NO_COLOR", "1")
        .current_dir(&data.0)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "a corrupt store must refuse the start:\n{text}"
    );
    assert!(
        text.contains(&seg.display().to_string()),
        "the refusal names the file:\n{text}"
    );
}
