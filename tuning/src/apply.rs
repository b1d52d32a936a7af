//! Applying a plan's sysctls (raise-only) and reverting them. The originals
//! of every value changed are recorded in a state file under the root
//! before anything is written, so `revert` restores exactly them. Both are
//! idempotent.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::host::{HostError, HostRoot, format_values, io_error};
use crate::plan::{SysctlSetting, raise_only};

/// Where the originals are recorded (under the root).
pub const STATE_FILE: &str = "/var/lib/gateway-tune/originals.json";

/// Why applying or reverting failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// Reading or writing the host failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The state file exists but is not ours or is damaged.
    #[error("state file {path} is damaged: {message}; fix or remove it")]
    State {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
}

/// One sysctl change (made, or to be made in a dry run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Dotted key.
    pub key: String,
    /// Value before.
    pub from: Vec<u64>,
    /// Value after.
    pub to: Vec<u64>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &[u64]| format_values(v).replace('\t', " ");
        write!(
            f,
            "{}: {} -> {}",
            self.key,
            show(&self.from),
            show(&self.to)
        )
    }
}

/// The recorded originals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Key → value before the first `apply` changed it.
    pub originals: BTreeMap<String, Vec<u64>>,
}

/// Reads the state file; `Ok(None)` when there is none.
pub fn load_state(root: &HostRoot) -> Result<Option<State>, ApplyError> {
    let Some(text) = root.read(STATE_FILE)? else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| ApplyError::State {
            path: root.path(STATE_FILE).display().to_string(),
            message: e.to_string(),
        })
}

fn save_state(root: &HostRoot, state: &State) -> Result<(), ApplyError> {
    let path = root.path(STATE_FILE);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    }
    let text = serde_json::to_string_pretty(state).map_err(|e| ApplyError::State {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text + "\n").map_err(|e| io_error(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))?;
    Ok(())
}

/// Raises each sysctl to at least its wanted value (never lowers one),
/// recording the original of every key it changes; keys already recorded
/// keep their first original. Keys missing on the host are skipped. With
/// `dry_run` nothing is written. Returns the changes (to be) made.
pub fn apply(
    root: &HostRoot,
    settings: &[SysctlSetting],
    dry_run: bool,
) -> Result<Vec<Change>, ApplyError> {
    let mut changes = Vec::new();
    for s in settings {
        let Some(current) = root.sysctl(s.key)? else {
            continue;
        };
        let to = raise_only(&current, &s.want);
        if to != current {
            changes.push(Change {
                key: s.key.to_owned(),
                from: current,
                to,
            });
        }
    }
    if dry_run || changes.is_empty() {
        return Ok(changes);
    }
    let mut state = load_state(root)?.unwrap_or_default();
    for c in &changes {
        state
            .originals
            .entry(c.key.clone())
            .or_insert_with(|| c.from.clone());
    }
    save_state(root, &state)?;
    for c in &changes {
        root.write_sysctl(&c.key, &c.to)?;
    }
    Ok(changes)
}

/// Restores every recorded original and removes the state file. Without a
/// state file there is nothing to do. With `dry_run` nothing is written.
pub fn revert(root: &HostRoot, dry_run: bool) -> Result<Vec<Change>, ApplyError> {
    let Some(state) = load_state(root)? else {
        return Ok(Vec::new());
    };
    let mut changes = Vec::new();
    for (key, original) in &state.originals {
        let Some(current) = root.sysctl(key)? else {
            continue;
        };
        if current != *original {
            changes.push(Change {
                key: key.clone(),
                from: current,
                to: original.clone(),
            });
        }
    }
    if dry_run {
        return Ok(changes);
    }
    for c in &changes {
        root.write_sysctl(&c.key, &c.to)?;
    }
    let path = root.path(STATE_FILE);
    std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive::DeriveInput;
    use crate::plan::make_plan;
    use crate::testutil::{FakeHost, healthy_facts};

    fn setting(key: &'static str, want: &[u64]) -> SysctlSetting {
        SysctlSetting {
            key,
            want: want.to_vec(),
            current: None,
            why: String::new(),
        }
    }

    fn settings() -> Vec<SysctlSetting> {
        vec![
            setting("net.core.somaxconn", &[65_535]),
            setting("net.ipv4.tcp_mem", &[200_000, 300_000, 400_000]),
            setting("fs.nr_open", &[65_536]),
            setting("net.netfilter.nf_conntrack_max", &[1_000_000]),
        ]
    }

    fn val(host: &FakeHost, key: &str) -> Vec<u64> {
        host.root().sysctl(key).unwrap().unwrap()
    }

    #[test]
    fn dry_run_changes_nothing() {
        let host = FakeHost::stock();
        let changes = apply(&host.root(), &settings(), true).unwrap();
        let shown: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "net.core.somaxconn: 4096 -> 65535",
                "net.ipv4.tcp_mem: 189000 252000 378000 -> 200000 300000 400000"
            ]
        );
        assert_eq!(val(&host, "net.core.somaxconn"), vec![4096]);
        assert!(load_state(&host.root()).unwrap().is_none());
    }

    #[test]
    fn apply_raises_only_and_is_idempotent() {
        let host = FakeHost::stock();
        let first = apply(&host.root(), &settings(), false).unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(val(&host, "net.core.somaxconn"), vec![65_535]);
        assert_eq!(
            val(&host, "net.ipv4.tcp_mem"),
            vec![200_000, 300_000, 400_000]
        );
        assert_eq!(val(&host, "fs.nr_open"), vec![1_048_576], "never lowered");
        assert!(
            !host.root().has_sysctl("net.netfilter.nf_conntrack_max"),
            "absent keys are not created"
        );
        let state = load_state(&host.root()).unwrap().unwrap();
        assert_eq!(state.originals["net.core.somaxconn"], vec![4096]);
        assert!(!state.originals.contains_key("fs.nr_open"));
        assert!(apply(&host.root(), &settings(), false).unwrap().is_empty());
        assert_eq!(load_state(&host.root()).unwrap().unwrap(), state);
    }

    #[test]
    fn a_second_apply_keeps_the_first_originals() {
        let host = FakeHost::stock();
        apply(&host.root(), &settings(), false).unwrap();
        apply(
            &host.root(),
            &[setting("net.core.somaxconn", &[100_000])],
            false,
        )
        .unwrap();
        assert_eq!(val(&host, "net.core.somaxconn"), vec![100_000]);
        revert(&host.root(), false).unwrap();
        assert_eq!(val(&host, "net.core.somaxconn"), vec![4096]);
    }

    #[test]
    fn revert_restores_and_is_idempotent() {
        let host = FakeHost::stock();
        apply(&host.root(), &settings(), false).unwrap();
        let dry = revert(&host.root(), true).unwrap();
        assert_eq!(dry.len(), 2);
        assert_eq!(
            val(&host, "net.core.somaxconn"),
            vec![65_535],
            "dry run wrote nothing"
        );
        let undone = revert(&host.root(), false).unwrap();
        assert_eq!(undone[0].to_string(), "net.core.somaxconn: 65535 -> 4096");
        assert_eq!(val(&host, "net.core.somaxconn"), vec![4096]);
        assert_eq!(
            val(&host, "net.ipv4.tcp_mem"),
            vec![189_000, 252_000, 378_000]
        );
        assert!(load_state(&host.root()).unwrap().is_none());
        assert!(revert(&host.root(), false).unwrap().is_empty());
    }

    #[test]
    fn damaged_state_is_reported() {
        let host = FakeHost::stock();
        host.file(STATE_FILE, "{not json");
        let err = revert(&host.root(), false).unwrap_err().to_string();
        assert!(err.contains("originals.json is damaged"), "{err}");
    }

    #[test]
    fn applying_a_plan_end_to_end() {
        let host = FakeHost::stock();
        let input = DeriveInput {
            target_conns: 1_000_000,
            cpus: vec![0, 1, 2, 3],
            mem_total_bytes: 64 << 30,
        };
        let plan = make_plan(&host.root(), &healthy_facts(), &input).unwrap();
        apply(&host.root(), &plan.sysctls, false).unwrap();
        for s in &plan.sysctls {
            assert_eq!(val(&host, s.key), s.target(), "{}", s.key);
        }
        let again = make_plan(&host.root(), &healthy_facts(), &input).unwrap();
        assert!(again.sysctls.iter().all(SysctlSetting::already_enough));
        revert(&host.root(), false).unwrap();
        let fresh = FakeHost::stock();
        for s in &plan.sysctls {
            assert_eq!(val(&host, s.key), val(&fresh, s.key), "{}", s.key);
        }
    }
}
