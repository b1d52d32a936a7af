//! The `gateway-tune` binary against a fake host root.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use tuning::config::GatewayConfig;

fn write(root: &Path, abs: &str, text: &str) {
    let path = root.join(abs.trim_start_matches('/'));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn fake_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    for (key, value) in [
        ("kernel/osrelease", "6.8.0"),
        ("kernel/io_uring_disabled", "0"),
        ("fs/nr_open", "1048576"),
        ("fs/file-max", "1000000"),
        ("net/core/somaxconn", "1024"),
        ("net/ipv4/tcp_max_syn_backlog", "1024"),
        ("net/core/netdev_max_backlog", "1000"),
        ("net/ipv4/tcp_mem", "10000\t20000\t30000"),
        ("net/ipv4/tcp_rmem", "4096\t131072\t6291456"),
        ("net/ipv4/tcp_wmem", "4096\t16384\t4194304"),
        ("net/ipv4/ip_local_port_range", "32768\t60999"),
    ] {
        write(r, &format!("/proc/sys/{key}"), value);
    }
    write(r, "/sys/devices/system/cpu/online", "0-3\n");
    write(r, "/proc/meminfo", "MemTotal: 16384000 kB\n");
    dir
}

fn tune(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gateway-tune"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn config_output_is_a_valid_gateway_config() {
    let root = fake_root();
    let o = tune(
        root.path(),
        &["config", "--target-conns", "200000", "--cores", "1-2"],
    );
    assert!(o.status.success(), "{o:?}");
    let cfg = GatewayConfig::from_toml(&stdout(&o), "stdout").unwrap();
    cfg.validate(4).unwrap();
    assert_eq!(cfg.shard.count, 2);
    assert_eq!(cfg.shard.cpus, vec![1, 2]);
    assert_eq!(cfg.shard.max_connections, 125_952);
}

#[test]
fn offline_cores_are_refused() {
    let root = fake_root();
    let o = tune(root.path(), &["config", "--cores", "0,9"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("CPU(s) 9 are not online"));
}

#[test]
fn check_json_and_exit_code() {
    let root = fake_root();
    let o = tune(
        root.path(),
        &["check", "--json", "--target-conns", "100000"],
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        o.status.code().unwrap(),
        v["exit_code"].as_i64().unwrap() as i32
    );
    // somaxconn 1024 < backlog 4096 and tcp_mem max 30000 pages < 100000: at least warnings
    assert!(o.status.code().unwrap() >= 1);
    let keys: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"net.ipv4.tcp_mem") && keys.contains(&"io_uring.setup"));
}

#[test]
fn check_a_config_file_like_the_gateway() {
    let root = fake_root();
    let cfg = root.path().join("gw.toml");
    std::fs::write(&cfg, "[shard]\ncount = 2\nmax_connections = 100000000\n").unwrap();
    let o = tune(root.path(), &["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stdout(&o).contains("shard.max_connections = 100000000"));
}

#[test]
fn plan_apply_revert_round_trip() {
    let root = fake_root();
    let r = root.path();
    let out = r.join("plan-out");
    let o = tune(
        r,
        &[
            "plan",
            "--target-conns",
            "100000",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{o:?}");
    let toml = std::fs::read_to_string(out.join("gateway.toml")).unwrap();
    GatewayConfig::from_toml(&toml, "plan")
        .unwrap()
        .validate(4)
        .unwrap();
    assert!(
        std::fs::read_to_string(out.join("90-gateway-tune.conf"))
            .unwrap()
            .contains("net.core.somaxconn = 4096")
    );

    let somaxconn = r.join("proc/sys/net/core/somaxconn");
    let dry = tune(r, &["apply", "--target-conns", "100000", "--dry-run"]);
    assert!(
        stdout(&dry).contains("would change net.core.somaxconn: 1024 -> 4096"),
        "{}",
        stdout(&dry)
    );
    assert_eq!(std::fs::read_to_string(&somaxconn).unwrap(), "1024");

    let applied = tune(r, &["apply", "--target-conns", "100000"]);
    assert!(stdout(&applied).contains("changed net.core.somaxconn: 1024 -> 4096"));
    assert_eq!(std::fs::read_to_string(&somaxconn).unwrap().trim(), "4096");
    let again = tune(r, &["apply", "--target-conns", "100000"]);
    assert!(
        stdout(&again).contains("nothing to raise"),
        "{}",
        stdout(&again)
    );

    let reverted = tune(r, &["revert"]);
    assert!(stdout(&reverted).contains("changed net.core.somaxconn: 4096 -> 1024"));
    assert_eq!(std::fs::read_to_string(&somaxconn).unwrap().trim(), "1024");
    assert!(stdout(&tune(r, &["revert"])).contains("nothing to revert"));
}

#[test]
fn check_fits_100_columns_unless_wide() {
    let root = fake_root();
    let narrow = stdout(&tune(root.path(), &["check", "--target-conns", "100000"]));
    let wide = stdout(&tune(
        root.path(),
        &["check", "--target-conns", "100000", "--wide"],
    ));
    for line in narrow.lines() {
        assert!(line.chars().count() <= 100, "{line:?}\n{narrow}");
    }
    assert!(
        wide.lines().any(|l| l.chars().count() > 100),
        "--wide keeps whole rows:\n{wide}"
    );
    // One entry per setting in both: each key starts exactly one line.
    let keys = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with(' ') && !l.is_empty())
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .filter(|k| k.contains('.'))
            .collect()
    };
    assert_eq!(keys(&narrow), keys(&wide));
    assert!(narrow.contains("fs.file-max"), "{narrow}");
    let words = narrow.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words.contains("100,000 clients + 65,536 for the rest of the system = 165,536"),
        "{narrow}"
    );
}
