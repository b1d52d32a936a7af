//! `make deb` (scripts/build-deb.sh) on the release binaries already
//! built: the package's files, control fields and conffiles, the systemd
//! unit's limits against what `gateway-tune plan` recommends and its name
//! against the drop-in the plan writes, and `systemd-analyze verify` on
//! the unit where systemd-analyze exists.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use e2e_tests::{TempDir, binary};

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the package into `dir` from the binaries next to `gateway`.
fn build_deb(dir: &Path) -> PathBuf {
    let release = binary("gateway").parent().unwrap().to_path_buf();
    assert!(
        release.ends_with("release"),
        "the package is built from release binaries: run `cargo build --release --bins`"
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = run(Command::new("bash")
        .arg(root.join("scripts/build-deb.sh"))
        .env("NO_BUILD", "1")
        .env("CARGO_TARGET_DIR", release.parent().unwrap())
        .env("DEB_OUT", dir));
    PathBuf::from(text(&out).trim())
}

/// `KEY=value` of a unit or drop-in.
fn setting<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn the_package_holds_the_binaries_config_and_a_hardened_unit() {
    let work = TempDir::new("deb");
    let deb = build_deb(&work.0);
    let version = env!("CARGO_PKG_VERSION");
    assert!(deb.ends_with(format!("gateway_{version}_{}.deb", arch())));

    let listing = text(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)));
    for path in [
        "./usr/bin/gateway",
        "./usr/bin/gateway-bench",
        "./usr/bin/gateway-tune",
        "./etc/gateway/gateway.toml",
        "./lib/systemd/system/gateway.service",
        "./usr/share/doc/gateway/copyright",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(&format!(" {path}"))),
            "{path} missing:\n{listing}"
        );
    }
    assert!(
        listing.lines().all(|l| l.contains(" root/root ")),
        "owned by root:\n{listing}"
    );

    let field = |name: &str| {
        text(&run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name)))
            .trim()
            .to_owned()
    };
    assert_eq!(field("Package"), "gateway");
    assert_eq!(field("Version"), version, "the version is Cargo's");
    assert_eq!(field("Architecture"), arch());
    let depends = field("Depends");
    assert!(depends.starts_with("libc6"), "{depends}");
    assert!(!depends.contains('@'), "placeholders filled: {depends}");

    let extracted = work.0.join("root");
    let control = work.0.join("control");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&extracted));
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/gateway/gateway.toml");

    // The starter config is what `gateway config` prints.
    let shipped = std::fs::read_to_string(extracted.join("etc/gateway/gateway.toml")).unwrap();
    let printed = text(&run(Command::new(binary("gateway")).arg("config")));
    assert_eq!(shipped.trim_end(), printed.trim_end());

    let unit_path = extracted.join("lib/systemd/system/gateway.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    for want in [
        "ExecStart=/usr/bin/gateway --config /etc/gateway/gateway.toml",
        "DynamicUser=yes",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "StateDirectory=gateway",
    ] {
        assert!(unit.lines().any(|l| l == want), "{want} missing:\n{unit}");
    }
    for placeholder in ["@LIMIT_NOFILE@", "@LIMIT_MEMLOCK@", "@TIMEOUT_STOP_SEC@"] {
        assert!(!unit.contains(placeholder), "{placeholder} left:\n{unit}");
    }
    assert_eq!(setting(&unit, "AmbientCapabilities"), Some(""), "none");
    // The stop timeout covers the drain deadline (30 s by default).
    let stop: u64 = setting(&unit, "TimeoutStopSec")
        .and_then(|v| v.strip_suffix('s')?.parse().ok())
        .unwrap();
    assert!(stop > 30, "TimeoutStopSec={stop}s");

    // Limits: the drop-in `gateway-tune plan` prints for its default
    // target (with this shell's limits low, as the build does) names this
    // unit and carries the same values.
    let plan = text(&run(Command::new("bash").arg("-c").arg(format!(
        "ulimit -n 1024; ulimit -Hn 1024; ulimit -l 64; ulimit -Hl 64; exec {} plan",
        binary("gateway-tune").display()
    ))));
    assert!(
        plan.contains("/etc/systemd/system/gateway.service.d/"),
        "the drop-in is for gateway.service:\n{plan}"
    );
    for key in ["LimitNOFILE", "LimitMEMLOCK"] {
        let want = setting(&plan, key).unwrap_or_else(|| panic!("{key} not in plan"));
        assert_eq!(setting(&unit, key), Some(want), "{key}");
    }

    verify_unit(&extracted);
}

fn arch() -> String {
    text(&run(Command::new("dpkg").arg("--print-architecture")))
        .trim()
        .to_owned()
}

/// `systemd-analyze verify` on the packaged unit inside the extracted
/// package (with the host's own units beside it for the targets it
/// names); it exits 0 on warnings, so any output about the unit fails.
fn verify_unit(extracted: &Path) {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        println!("note: systemd-analyze is not installed; the unit was not verified");
        return;
    };
    assert!(probe.status.success());
    let units = extracted.join("lib/systemd/system");
    for dir in ["/lib/systemd/system", "/usr/lib/systemd/system"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let to = units.join(e.file_name());
            if !to.exists() && e.path().is_file() {
                let _ = std::fs::copy(e.path(), to);
            }
        }
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", extracted.display()))
        .arg("/lib/systemd/system/gateway.service")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("gateway.service"),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}
