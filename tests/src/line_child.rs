//! Peers nobody here wrote, run as child processes that print one line per
//! thing they saw (Python scripts in `tests/py`, `mosquitto_sub`): their
//! lines read with a timeout, commands written to their stdin, and the
//! venv `make deps` installs their Python packages into.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// The Python of the venv `make deps` makes (or `$GATEWAY_TEST_PYTHON`),
/// which has the packages of the Makefile's `TEST_PY_PKGS`.
pub fn test_python() -> PathBuf {
    if let Ok(p) = std::env::var("GATEWAY_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let p = target.join("pyenv").join("bin").join("python3");
    assert!(
        p.exists(),
        "{} is missing: run `make deps` (it installs the Python packages the tests use)",
        p.display()
    );
    p
}

/// A script of `tests/py`.
pub fn test_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("py")
        .join(name)
}

/// A child process whose stdout is read line by line; killed on drop.
pub struct LineChild {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl LineChild {
    /// Starts `cmd` with piped stdin and stdout (stderr inherited).
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LineChild {
            child,
            stdin,
            lines,
        }
    }

    /// The next line, within 10 s.
    pub fn line(&self) -> String {
        self.line_within(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("the peer said nothing more in 10 s (or exited)"))
    }

    /// The next line within `within`; `None` if there was none (or the
    /// child exited).
    pub fn line_within(&self, within: Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
    }

    /// Reads lines until one satisfies `pred` and returns it; panics
    /// after 10 s, naming the lines skipped.
    pub fn line_where(&self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut skipped = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.line_within(left) {
                Some(l) if pred(&l) => return l,
                Some(l) => skipped.push(l),
                None => break,
            }
        }
        panic!("no such line within 10 s; got {skipped:?}")
    }

    /// Writes `cmd` and a newline to the child's stdin.
    pub fn say(&mut self, cmd: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{cmd}").expect("write to the peer");
    }

    /// Waits up to `within` for the child to exit; its status, if it did.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for LineChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
