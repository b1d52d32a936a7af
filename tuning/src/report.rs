//! Check results: findings with a severity, a table for people and JSON for
//! machines, and the exit code that gates a deploy.

use std::fmt::Write as _;

use serde::Serialize;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Nothing to do.
    Ok,
    /// Works, but below what the target needs or recommends.
    Warn,
    /// The gateway cannot run (or cannot reach the target) like this.
    Block,
}

impl Severity {
    /// `ok`, `warn` or `block`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Block => "block",
        }
    }
}

/// One checked setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What was checked (`fs.nr_open`, `rlimit.nofile.soft`, `io_uring.setup`, ...).
    pub key: String,
    /// The value found on the host.
    pub current: String,
    /// The value the target needs.
    pub recommended: String,
    /// How bad the difference is.
    pub severity: Severity,
    /// Why the recommendation, and what to change.
    pub why: String,
}

impl Finding {
    /// A finding from its parts.
    pub fn new(
        key: impl Into<String>,
        current: impl Into<String>,
        recommended: impl Into<String>,
        severity: Severity,
        why: impl Into<String>,
    ) -> Self {
        Self {
            key: key.into(),
            current: current.into(),
            recommended: recommended.into(),
            severity,
            why: why.into(),
        }
    }
}

/// All findings of a check, in the order they were made.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The findings.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Adds a finding.
    pub fn push(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    /// Appends all findings of another report.
    pub fn extend(&mut self, other: impl IntoIterator<Item = Finding>) {
        self.findings.extend(other);
    }

    /// Findings that stop the gateway.
    pub fn blocking(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Block)
    }

    /// Findings worth a warning.
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warn)
    }

    /// The finding for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.key == key)
    }

    /// The worst severity found (`Ok` for an empty report).
    pub fn worst(&self) -> Severity {
        self.findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok)
    }

    /// Process exit code: 0 all ok, 1 warnings, 2 something blocks.
    pub fn exit_code(&self) -> i32 {
        match self.worst() {
            Severity::Ok => 0,
            Severity::Warn => 1,
            Severity::Block => 2,
        }
    }

    /// A plain-text table (key, current, recommended, severity, why) with a
    /// summary line.
    pub fn to_table(&self) -> String {
        let headers = ["KEY", "CURRENT", "RECOMMENDED", "SEVERITY"];
        let mut widths = headers.map(str::len);
        for f in &self.findings {
            for (w, v) in widths.iter_mut().zip([
                &f.key,
                &f.current,
                &f.recommended,
                &f.severity.as_str().to_owned(),
            ]) {
                *w = (*w).max(v.chars().count());
            }
        }
        let mut out = String::new();
        let row = |out: &mut String, cells: [&str; 5]| {
            for (cell, w) in cells.iter().zip(widths) {
                let _ = write!(out, "{cell:<w$}  ");
            }
            let _ = writeln!(out, "{}", cells[4]);
        };
        row(
            &mut out,
            [headers[0], headers[1], headers[2], headers[3], "WHY"],
        );
        for f in &self.findings {
            row(
                &mut out,
                [
                    &f.key,
                    &f.current,
                    &f.recommended,
                    f.severity.as_str(),
                    &f.why,
                ],
            );
        }
        let blocks = self.blocking().count();
        let warns = self.warnings().count();
        let _ = writeln!(
            out,
            "\n{} checks: {} ok, {warns} warn, {blocks} block -> exit {}",
            self.findings.len(),
            self.findings.len() - warns - blocks,
            self.exit_code()
        );
        out
    }

    /// Pretty JSON: `{"findings": [...], "worst": "...", "exit_code": N}`.
    pub fn to_json(&self) -> String {
        let value = serde_json::json!({
            "findings": self.findings,
            "worst": self.worst(),
            "exit_code": self.exit_code(),
        });
        serde_json::to_string_pretty(&value).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let mut r = Report::default();
        r.push(Finding::new("a", "1", "1", Severity::Ok, "fine"));
        r.push(Finding::new(
            "b.long.key",
            "2",
            "3",
            Severity::Warn,
            "raise it",
        ));
        r
    }

    #[test]
    fn exit_codes_follow_the_worst_finding() {
        assert_eq!(Report::default().exit_code(), 0);
        let mut r = report();
        assert_eq!(r.exit_code(), 1);
        assert_eq!(r.warnings().count(), 1);
        r.push(Finding::new("c", "x", "y", Severity::Block, "no"));
        assert_eq!(r.exit_code(), 2);
        assert_eq!(r.blocking().next().unwrap().key, "c");
    }

    #[test]
    fn table_aligns_and_summarises() {
        let t = report().to_table();
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("KEY         CURRENT"), "{t}");
        assert!(lines[2].contains("b.long.key  2 "), "{t}");
        assert!(
            t.contains("2 checks: 1 ok, 1 warn, 0 block -> exit 1"),
            "{t}"
        );
    }

    #[test]
    fn json_is_machine_readable() {
        let v: serde_json::Value = serde_json::from_str(&report().to_json()).unwrap();
        assert_eq!(v["exit_code"], 1);
        assert_eq!(v["worst"], "warn");
        assert_eq!(v["findings"][1]["severity"], "warn");
        assert_eq!(v["findings"][1]["key"], "b.long.key");
    }
}
