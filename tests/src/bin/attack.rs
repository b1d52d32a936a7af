//! `e2e-attack`: runs the hostile-client suite ([`e2e_tests::attack`])
//! against the release gateway and prints one Markdown table row per case
//! (memory before, at peak and after; the healthy client's ping latency;
//! strangers lost), judged against the latency target (ping p99 ≤ 10 ms).
//! `--small` runs the `make test` size; the default is the
//! full size. Case names (as in the table) run only those cases. Exits 1 if
//! any case failed its verdict, 2 on an unknown case name.

use e2e_tests::attack::{self, Case, PING_P99_MAX_US, Report, Scale};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let small = args.iter().any(|a| a == "--small");
    let named: Vec<&String> = args.iter().filter(|a| *a != "--small").collect();
    if let Some(bad) = named
        .iter()
        .find(|n| Case::ALL.iter().all(|c| c.name() != n.as_str()))
    {
        let known: Vec<&str> = Case::ALL.iter().map(|c| c.name()).collect();
        eprintln!("unknown case {bad}; cases: {}", known.join(", "));
        std::process::exit(2);
    }
    let scale = if small { Scale::small() } else { Scale::full() };
    println!(
        "scale: {:.0} s per attack, {} attacker threads, {} bystanders, {} held connections, {} slow consumers\n",
        scale.secs, scale.attackers, scale.bystanders, scale.held, scale.slow_consumers
    );
    println!("{}", Report::header());
    let mut failed = Vec::new();
    let chosen = Case::ALL
        .into_iter()
        .filter(|c| named.is_empty() || named.iter().any(|n| n.as_str() == c.name()));
    for case in chosen {
        let report = attack::run(case, scale);
        println!("{}", report.row(PING_P99_MAX_US));
        if let Err(why) = report.verdict(PING_P99_MAX_US) {
            failed.push(why);
        }
    }
    if !failed.is_empty() {
        for why in &failed {
            eprintln!("FAILED {why}");
        }
        std::process::exit(1);
    }
}
