//! `e2e-attack`: runs the hostile-client suite ([`e2e_tests::attack`])
//! against the release gateway and prints one Markdown table row per case
//! (memory before, at peak and after; the healthy client's ping latency;
//! strangers lost). `--small` runs the `make test` size; the default is the
//! full size. Exits 1 if any case failed its verdict.

use e2e_tests::attack::{self, Case, Report, Scale};

fn main() {
    let small = std::env::args().any(|a| a == "--small");
    let scale = if small { Scale::small() } else { Scale::full() };
    println!(
        "scale: {:.0} s per attack, {} attacker threads, {} bystanders, {} held connections, {} slow consumers\n",
        scale.secs, scale.attackers, scale.bystanders, scale.held, scale.slow_consumers
    );
    println!("{}", Report::header());
    let mut failed = Vec::new();
    for case in Case::ALL {
        let report = attack::run(case, scale);
        println!("{}", report.row());
        if let Err(why) = report.verdict() {
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
