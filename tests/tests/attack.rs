//! The hostile-client suite at `make test` size: every attack against the
//! real gateway must leave strangers connected, keep serving a healthy
//! client (ping p99 within the liveness bound: the 10 ms latency target is
//! met in the full-size benchmark, `make attack`, not in a timed test) and
//! leave memory where it started.

use e2e_tests::attack::{self, Case, PING_P99_LIVENESS_US, Scale};

fn held(case: Case) {
    let report = attack::run(case, Scale::small());
    println!("{}", report.row(PING_P99_LIVENESS_US));
    assert!(
        report.actions > 0,
        "{}: the attack did nothing",
        case.name()
    );
    if let Err(why) = report.verdict(PING_P99_LIVENESS_US) {
        panic!("{why}\n{report:?}");
    }
}

#[test]
fn slowloris() {
    held(Case::Slowloris);
}

#[test]
fn garbage_frames() {
    held(Case::Garbage);
}

#[test]
fn oversized_hellos_and_labels() {
    held(Case::OversizedHello);
}

#[test]
fn bye_close_races() {
    held(Case::ByeRace);
}

#[test]
fn reconnect_storm() {
    held(Case::ReconnectStorm);
}

#[test]
fn slow_consumers() {
    held(Case::SlowConsumers);
}

#[test]
fn control_api_smuggling() {
    held(Case::ControlSmuggling);
}

#[test]
fn control_api_stalls() {
    held(Case::ControlStalls);
}
