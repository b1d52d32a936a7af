//! The suite's Markdown: medians of the runs per system and count, each
//! beside the floor measured in the same rounds, spliced into
//! docs/BENCHMARKS.md between markers.

use std::fmt::Write as _;

use crate::report::RunReport;

/// Start marker of the generated table in the Markdown file.
pub const MD_BEGIN: &str = "<!-- gateway-bench suite: begin -->";
/// End marker.
pub const MD_END: &str = "<!-- gateway-bench suite: end -->";

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// Runs of one table cell.
fn cell<'a>(
    runs: &'a [RunReport],
    scenario: &'a str,
    system: &'a str,
    conns: u32,
) -> impl Iterator<Item = &'a RunReport> {
    runs.iter().filter(move |r| {
        r.scenario == scenario && r.system == system && r.params["connections"] == conns
    })
}

/// Median of a memory figure over runs whose connect phase completed
/// (≥ 99 % established): memory does not depend on the harness's timing.
fn med_memory(runs: &[RunReport], system: &str, conns: u32, metric: &str) -> Option<f64> {
    median(
        cell(runs, "connect", system, conns)
            .filter(|r| {
                r.metrics
                    .get("connections_established")
                    .is_some_and(|e| *e >= 0.99 * f64::from(conns))
            })
            .filter_map(|r| r.metrics.get(metric).copied())
            .collect(),
    )
}

/// Median of a timing figure over VALID runs; if there are none, over all
/// runs, flagged (`true`): the harness could not keep its schedule there.
fn med_timing(
    runs: &[RunReport],
    scenario: &str,
    system: &str,
    conns: u32,
    metric: &str,
) -> (Option<f64>, bool) {
    valid_first(|valid_only| {
        median(
            cell(runs, scenario, system, conns)
                .filter(|r| r.valid || !valid_only)
                .filter_map(|r| r.metrics.get(metric).copied())
                .collect(),
        )
    })
}

/// `of(true)` (VALID runs only) if it has a figure, else `of(false)` (all
/// runs) flagged `true`.
fn valid_first(of: impl Fn(bool) -> Option<f64>) -> (Option<f64>, bool) {
    match of(true) {
        Some(v) => (Some(v), false),
        None => {
            let all = of(false);
            (all, all.is_some())
        }
    }
}

/// The Markdown comparison table (medians of valid runs) for `runs`.
#[must_use]
pub fn table(runs: &[RunReport]) -> String {
    let offered = runs
        .iter()
        .find(|r| r.scenario == "connect")
        .and_then(|r| r.params["rate"].as_f64())
        .unwrap_or(0.0);
    let floor = |m: &str| {
        median(
            runs.iter()
                .filter(|r| r.scenario == "floor")
                .filter_map(|r| r.metrics.get(m).copied())
                .collect(),
        )
    };
    let floor_dps = floor("deliveries_per_s");
    let floor_cps = floor("connections_per_s");
    let floor_bcast = floor("broadcast_us_per_1k_conns");
    let mut rows: Vec<(String, u32)> = Vec::new();
    for r in runs
        .iter()
        .filter(|r| r.scenario == "connect" || r.scenario == "fanout")
    {
        let n = u32::try_from(r.params["connections"].as_u64().unwrap_or(0)).unwrap_or(0);
        if !rows.iter().any(|(s, c)| s == &r.system && *c == n) {
            rows.push((r.system.clone(), n));
        }
    }
    let f = |v: Option<f64>, scale: f64, digits: usize| {
        v.map_or("–".to_string(), |x| format!("{:.*}", digits, x / scale))
    };
    let ratio = |v: Option<f64>, base: Option<f64>| match (v, base) {
        (Some(v), Some(b)) if b > 0.0 => format!("{:.2}×", v / b),
        _ => "–".into(),
    };
    let mut t = String::new();
    let offered = if offered > 0.0 {
        format!("{offered:.0}/s offered")
    } else {
        "storm".into()
    };
    let _ = writeln!(
        t,
        "| system | connections | RSS / idle conn (B) | kernel Slab / conn (B) | connections/s at {offered} (× floor) | broadcast deliveries/s (× floor) | fan-out completion p99 ms (× floor) |"
    );
    let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---:|");
    for (sys, n) in &rows {
        let rss = med_memory(runs, sys, *n, "target_rss_bytes_per_conn");
        let slab = med_memory(runs, sys, *n, "kernel_slab_bytes_per_conn");
        let (cps, cps_flag) = med_timing(runs, "connect", sys, *n, "connections_per_s");
        let (dps, dps_flag) = med_timing(runs, "fanout", sys, *n, "deliveries_per_s");
        let (p99, p99_flag) = med_timing(runs, "fanout", sys, *n, "completion_p99_us");
        let dag = |flag: bool| if flag { " †" } else { "" };
        // The floor's completion for the same N: N sends split over 2 threads.
        let floor_p99 = floor_bcast.map(|us| us * f64::from(*n) / 1000.0);
        let _ = writeln!(
            t,
            "| {sys} | {n} | {} | {} | {}{} ({}) | {}{} ({}) | {}{} ({}) |",
            f(rss, 1.0, 0),
            f(slab, 1.0, 0),
            f(cps, 1.0, 0),
            dag(cps_flag),
            ratio(cps, floor_cps),
            f(dps, 1.0, 0),
            dag(dps_flag),
            ratio(dps, floor_dps),
            f(p99, 1000.0, 2),
            dag(p99_flag),
            ratio(p99, floor_p99),
        );
    }
    let _ = writeln!(
        t,
        "| floor (plain blocking loopback sockets) | {} | – | {} | {} | {} | {} (per 1k conns) |",
        f(floor("pairs"), 1.0, 0),
        f(floor("kernel_slab_bytes_per_pair"), 1.0, 0),
        f(floor_cps, 1.0, 0),
        f(floor_dps, 1.0, 0),
        f(floor_bcast, 1000.0, 3),
    );
    let _ = writeln!(
        t,
        "\n† no VALID run: the median of the INVALID runs, where the harness could not keep its own \
         schedule (it shares the cores with the system measured), so a rate is a lower bound and a \
         latency includes harness delay. Memory columns use every run whose connections were all \
         established. – : not measured (e.g. the run failed)."
    );
    t.push_str(&unicast_table(runs));
    t
}

/// Median of a delivery-latency percentile over the VALID unicast runs
/// of `system` (flagged `true` when only INVALID runs exist).
fn med_unicast(
    runs: &[RunReport],
    system: &str,
    pick: fn(&crate::histo::Summary) -> u64,
) -> (Option<f64>, bool) {
    valid_first(|valid_only| {
        median(
            runs.iter()
                .filter(|r| r.scenario == "unicast" && r.system == system)
                .filter(|r| r.valid || !valid_only)
                .filter_map(|r| r.histograms.get("delivery"))
                .map(|h| pick(&h.summary) as f64)
                .collect(),
        )
    })
}

/// The unicast comparison: push-to-client latency per system (medians
/// of the per-run percentiles), empty when no unicast ran.
fn unicast_table(runs: &[RunReport]) -> String {
    let Some(first) = runs.iter().find(|r| r.scenario == "unicast") else {
        return String::new();
    };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\nUnicast: {} pushes/s open-loop to random users among {} connected, one publisher \
         (the gateway through `POST /v1/push`, pipelined; the brokers one topic per user). \
         Push-to-client latency from the intended send time, µs, median over runs of each \
         run's percentile:\n",
        first.params["rate"].as_f64().unwrap_or(0.0),
        first.params["connections"].as_u64().unwrap_or(0),
    );
    let _ = writeln!(t, "| system | runs | p50 | p99 | p99.9 | lost (sum) |");
    let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|");
    let mut systems: Vec<&str> = Vec::new();
    for r in runs.iter().filter(|r| r.scenario == "unicast") {
        if !systems.contains(&r.system.as_str()) {
            systems.push(&r.system);
        }
    }
    for sys in systems {
        let of_sys = || {
            runs.iter()
                .filter(move |r| r.scenario == "unicast" && r.system == sys)
        };
        let cell = |(v, flag): (Option<f64>, bool)| {
            v.map_or("–".to_string(), |x| {
                format!("{x:.0}{}", if flag { " †" } else { "" })
            })
        };
        let lost: f64 = of_sys()
            .filter_map(|r| r.metrics.get("lost").copied())
            .sum();
        let _ = writeln!(
            t,
            "| {sys} | {} | {} | {} | {} | {lost:.0} |",
            of_sys().count(),
            cell(med_unicast(runs, sys, |s| s.p50_us)),
            cell(med_unicast(runs, sys, |s| s.p99_us)),
            cell(med_unicast(runs, sys, |s| s.p999_us)),
        );
    }
    t
}

/// Replaces the text between the markers of `md` (appending them if absent).
#[must_use]
pub fn splice(md: &str, body: &str) -> String {
    let block = format!("{MD_BEGIN}\n{body}{MD_END}");
    match (md.find(MD_BEGIN), md.find(MD_END)) {
        (Some(a), Some(b)) if b > a => format!("{}{block}{}", &md[..a], &md[b + MD_END.len()..]),
        _ => format!("{md}\n{block}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(scenario: &str, system: &str, n: u32, m: &[(&str, f64)]) -> RunReport {
        let mut r = RunReport::new(scenario, system, serde_json::json!({"connections": n}));
        for (k, v) in m {
            r.metric(k, *v);
        }
        r
    }

    #[test]
    fn table_uses_medians_and_floor_ratios() {
        let mut runs = vec![rep(
            "floor",
            "floor",
            100,
            &[
                ("deliveries_per_s", 100_000.0),
                ("connections_per_s", 10_000.0),
                ("broadcast_us_per_1k_conns", 4000.0),
                ("pairs", 100.0),
            ],
        )];
        for v in [1.0, 3.0, 2.0] {
            runs.push(rep(
                "connect",
                "gateway",
                1000,
                &[
                    ("target_rss_bytes_per_conn", 100.0 * v),
                    ("connections_per_s", 20_000.0),
                    ("connections_established", 1000.0),
                ],
            ));
            runs.push(rep(
                "fanout",
                "gateway",
                1000,
                &[
                    ("deliveries_per_s", 200_000.0 * v),
                    ("completion_p99_us", 8000.0),
                ],
            ));
        }
        let mut bad = rep("fanout", "gateway", 1000, &[("deliveries_per_s", 1e12)]);
        bad.invalidate(vec!["x".into()]);
        runs.push(bad);
        let t = table(&runs);
        let row = t.lines().find(|l| l.starts_with("| gateway")).unwrap();
        assert!(row.contains("| 200 |"), "{row}");
        assert!(row.contains("20000 (2.00×)"), "{row}");
        assert!(row.contains("400000 (4.00×)"), "{row}");
        // Floor for 1000 conns: 4000 µs per 1k → 4 ms; 8 ms is 2×.
        assert!(row.contains("8.00 (2.00×)"), "{row}");
    }

    #[test]
    fn invalid_only_cells_are_flagged_and_memory_needs_all_established() {
        let mut a = rep(
            "connect",
            "nats",
            100,
            &[
                ("connections_per_s", 900.0),
                ("target_rss_bytes_per_conn", 20_000.0),
                ("connections_established", 100.0),
            ],
        );
        a.invalidate(vec!["lag".into()]);
        let b = rep(
            "connect",
            "nats",
            100,
            &[
                ("target_rss_bytes_per_conn", 1.0),
                ("connections_established", 50.0),
            ],
        );
        let t = table(&[a, b]);
        let row = t.lines().find(|l| l.starts_with("| nats")).unwrap();
        assert!(row.contains("| 20000 |"), "{row}");
        assert!(row.contains("900 †"), "{row}");
        assert!(t.contains("† no VALID run"));
    }

    #[test]
    fn unicast_rows_take_medians_of_valid_runs() {
        let mut runs = Vec::new();
        for (p99, lost) in [(900, 0.0), (700, 0.0), (1500, 2.0)] {
            let mut r = RunReport::new(
                "unicast",
                "gateway",
                serde_json::json!({"connections": 100, "rate": 20000.0}),
            );
            let mut h = crate::histo::Latency::new();
            h.record_n_us(100, 980);
            h.record_n_us(p99, 20);
            r.histogram("delivery", &h);
            r.metric("lost", lost);
            runs.push(r);
        }
        let mut bad = runs[0].clone();
        bad.system = "nats".into();
        bad.invalidate(vec!["lag".into()]);
        runs.push(bad);
        let t = table(&runs);
        assert!(t.contains("20000 pushes/s"), "{t}");
        let row = t
            .lines()
            .find(|l| l.starts_with("| gateway | 3 |"))
            .unwrap();
        let p99 = row
            .split('|')
            .nth(4)
            .unwrap()
            .trim()
            .parse::<f64>()
            .unwrap();
        assert!(
            (895.0..=905.0).contains(&p99),
            "median of ~700/900/1500: {row}"
        );
        assert!(row.ends_with("| 2 |"), "{row}");
        let nats = t.lines().find(|l| l.starts_with("| nats")).unwrap();
        assert!(nats.contains('†'), "{nats}");
    }

    #[test]
    fn splice_replaces_between_markers() {
        let md = format!("# B\n{MD_BEGIN}\nold\n{MD_END}\ntail\n");
        let out = splice(&md, "new\n");
        assert!(out.contains("new") && !out.contains("old") && out.ends_with("tail\n"));
        let out = splice("# B\n", "t\n");
        assert!(out.contains(MD_BEGIN) && out.contains("t\n"));
    }
}
