//! End-to-end tests of HTTP/1.1 pipelining on the control listener: many
//! requests written at once on one connection get their answers in order,
//! including answers that wait for other shards.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use e2e_tests::{Client, Gateway, http_request as request, read_responses};
use serde_json::{Value, json};

#[test]
fn pipelined_requests_are_answered_in_order() {
    let gw = Gateway::start(2, "");
    let mut clients: Vec<Client> = (0..6)
        .map(|i| Client::established(gw.client, &format!("pipe{i}")))
        .collect();
    // Pushes (answered at once), presence queries (answered when the
    // user's owner shard and holding shards reply), a bad push (400) and
    // health checks, interleaved and written in one go.
    let mut wire = String::new();
    let mut expect: Vec<(&str, usize)> = Vec::new();
    for round in 0..10 {
        let user = format!("pipe{}", round % 6);
        let push = json!({"to": {"user": user}, "payload": format!("p{round}")}).to_string();
        wire += &request("POST", "/v1/push", &push, false);
        expect.push(("push", round));
        wire += &request("GET", &format!("/v1/users/{user}"), "", false);
        expect.push(("user", round % 6));
        if round % 3 == 0 {
            wire += &request("POST", "/v1/push", "{not json", false);
            expect.push(("bad", round));
        }
        wire += &request("GET", "/healthz", "", false);
        expect.push(("health", round));
    }
    let mut s = TcpStream::connect(gw.control).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(wire.as_bytes()).unwrap();
    let answers = read_responses(&mut s, expect.len());
    let mut last_id = None;
    for ((what, n), (status, body, closes)) in expect.iter().zip(&answers) {
        assert!(!closes, "keep-alive throughout: {what} {n}");
        let v: Value = serde_json::from_str(body).unwrap();
        match *what {
            "push" => {
                assert_eq!(*status, 200, "{body}");
                let id = v["id"].as_u64().unwrap();
                assert!(last_id < Some(id), "push ids rise in request order");
                last_id = Some(id);
            }
            "user" => {
                assert_eq!(*status, 200, "{body}");
                assert_eq!(v["user"], format!("pipe{n}"), "answer {n} in its place");
                assert_eq!(v["sessions"].as_array().unwrap().len(), 1, "{body}");
            }
            "bad" => assert_eq!(*status, 400, "{body}"),
            _ => assert_eq!(v["status"], "ok", "{body}"),
        }
    }
    // Every push arrived, in the order sent for each user.
    for (i, c) in clients.iter_mut().enumerate() {
        let want: Vec<String> = (0..10)
            .filter(|r| r % 6 == i)
            .map(|r| format!("p{r}"))
            .collect();
        let mut got = Vec::new();
        while got.len() < want.len() {
            match c.next_push(Duration::from_secs(3)) {
                Some(p) => got.push(String::from_utf8_lossy(&p.payload).into_owned()),
                None => break,
            }
        }
        assert_eq!(got, want, "user pipe{i}");
    }
    // A request asking to close ends the pipeline: later ones are not
    // served and the connection closes once its answer is out.
    let tail = request("GET", "/healthz", "", true) + &request("GET", "/healthz", "", false);
    s.write_all(tail.as_bytes()).unwrap();
    let last = read_responses(&mut s, 1);
    assert_eq!(last[0].0, 200);
    assert!(last[0].2, "the answer says the connection closes");
    let mut rest = Vec::new();
    assert!(
        s.read_to_end(&mut rest).is_ok() && rest.is_empty(),
        "nothing after the closing answer: {:?}",
        String::from_utf8_lossy(&rest)
    );
}
