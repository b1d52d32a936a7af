//! `make deps`'s installer (scripts/install-debs.sh): names what is
//! present, and run as a non-root user with a package missing it stops
//! with a message naming the package instead of apt's lock error.

// Test helpers in this file panic on set-up failures: that fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-debs.sh")
}

#[test]
fn present_packages_are_named_and_nothing_is_installed() {
    let out = Command::new("sh")
        .arg(script())
        .arg("dpkg")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("present: dpkg"), "{stdout}");
}

#[test]
fn a_non_root_user_is_told_which_packages_to_install() {
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    let mut cmd = if root {
        // As root, drop to nobody for this one run.
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh"]);
        c
    } else {
        Command::new("sh")
    };
    let out = match cmd
        .arg(script())
        .args(["dpkg", "no-such-package-e2e"])
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            println!("note: skipped, cannot run as a non-root user here: {e}");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("missing Debian packages: no-such-package-e2e"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sudo apt-get install no-such-package-e2e"),
        "{stderr}"
    );
    assert!(!stderr.contains("lock"), "no apt lock error: {stderr}");
}
