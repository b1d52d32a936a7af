//! Check results: findings with a severity, the [`Mode`] that decides how
//! strictly a check grades them, a table for people and JSON for machines,
//! and the exit code that gates a deploy.

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

/// How a check judges limits the gateway needs per shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `gateway-tune check`: the host against a target; limits the plan
    /// raises are warnings.
    Host,
    /// Gateway start-up with a concrete config: a direct-descriptor table
    /// the kernel will refuse blocks.
    Startup,
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
        self.summary(&mut out);
        out
    }

    /// The table in at most `width` columns (`gateway-tune check` without
    /// `--wide`): one entry per setting, its key, current, recommended
    /// value and severity in columns (each wrapped within its column when
    /// longer than its share), and the why wrapped below, indented.
    pub fn to_table_width(&self, width: usize) -> String {
        const GAP: usize = 2;
        const INDENT: usize = 4;
        let headers = ["KEY", "CURRENT", "RECOMMENDED", "SEVERITY"];
        // Shares of the width: keys and severities are short and kept
        // whole as long as they fit; values share what is left.
        let mut widths = headers.map(str::len);
        for f in &self.findings {
            for (w, v) in widths.iter_mut().zip(Self::cells(f)) {
                *w = (*w).max(v.chars().count());
            }
        }
        let budget = width.saturating_sub(GAP * 3);
        widths[0] = widths[0].min(budget / 2);
        widths[3] = widths[3].min(8);
        let rest = budget.saturating_sub(widths[0] + widths[3]);
        let (cur, rec) = (widths[1], widths[2]);
        if cur + rec > rest {
            let half = rest / 2;
            widths[1] = cur.min(half.max(rest.saturating_sub(rec)));
            widths[2] = rest.saturating_sub(widths[1]);
        }
        let widths = widths.map(|w| w.max(1));
        let mut out = String::new();
        let row = |out: &mut String, cells: [&str; 4]| {
            let wrapped: Vec<Vec<String>> =
                cells.iter().zip(widths).map(|(c, w)| wrap(c, w)).collect();
            let lines = wrapped.iter().map(Vec::len).max().unwrap_or(1);
            for i in 0..lines {
                let mut line = String::new();
                for (j, (col, w)) in wrapped.iter().zip(widths).enumerate() {
                    let cell = col.get(i).map_or("", String::as_str);
                    if j < 3 {
                        let _ = write!(line, "{cell:<w$}{:GAP$}", "");
                    } else {
                        line.push_str(cell);
                    }
                }
                let _ = writeln!(out, "{}", line.trim_end());
            }
        };
        row(&mut out, headers);
        for f in &self.findings {
            row(&mut out, Self::cells(f));
            for line in wrap(&f.why, width.saturating_sub(INDENT).max(1)) {
                let _ = writeln!(out, "{:INDENT$}{line}", "");
            }
        }
        self.summary(&mut out);
        out
    }

    fn cells(f: &Finding) -> [&str; 4] {
        [&f.key, &f.current, &f.recommended, f.severity.as_str()]
    }

    fn summary(&self, out: &mut String) {
        let blocks = self.blocking().count();
        let warns = self.warnings().count();
        let _ = writeln!(
            out,
            "\n{} checks: {} ok, {warns} warn, {blocks} block -> exit {}",
            self.findings.len(),
            self.findings.len() - warns - blocks,
            self.exit_code()
        );
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

/// `text` in lines of at most `width` characters, broken at spaces (a
/// word longer than a line is split); at least one line.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > width {
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            lines.push(word.drain(..width).collect());
        }
        let word: String = word.into_iter().collect();
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
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
    fn the_narrow_table_fits_its_width_one_entry_per_setting() {
        let mut r = report();
        r.push(Finding::new(
            "net.netfilter.nf_conntrack_max",
            "287892 383858 575784",
            "pressure >= 100000, max >= 200000",
            Severity::Warn,
            "the gateway keeps client sockets as io_uring direct descriptors: each ring's \
             table is bounded by RLIMIT_NOFILE, so the need is per shard: 2 shards × 19,936 \
             connections each = 39,872; raise LimitNOFILE to at least 63552",
        ));
        r.push(Finding::new("x", "a", "b", Severity::Ok, "w".repeat(250)));
        for width in [100, 80, 60] {
            let t = r.to_table_width(width);
            for line in t.lines() {
                assert!(line.chars().count() <= width, "{width}: {line:?}\n{t}");
            }
            // Every setting starts a line of its own, its why below it
            // (keys are kept whole down to 80 columns).
            for f in r.findings.iter().filter(|_| width >= 80) {
                assert!(t.lines().any(|l| l.starts_with(&f.key)), "{}\n{t}", f.key);
            }
            let words: Vec<&str> = t.split_whitespace().collect();
            assert!(words.contains(&"LimitNOFILE"), "nothing lost: {t}");
            assert!(
                t.contains("4 checks: 2 ok, 2 warn, 0 block -> exit 1"),
                "{t}"
            );
        }
        let t = r.to_table_width(100);
        let row = t.lines().find(|l| l.starts_with("net.netfilter")).unwrap();
        assert!(row.contains("287892 383858 575784"), "{t}");
        assert!(
            t.contains("\n    the gateway keeps"),
            "why indented below: {t}"
        );
        // The wide table keeps one line per setting.
        assert_eq!(r.to_table().lines().count(), r.findings.len() + 3);
    }

    #[test]
    fn wrap_breaks_at_spaces_and_splits_long_words() {
        assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
        assert_eq!(wrap("abcdefgh", 3), ["abc", "def", "gh"]);
        assert_eq!(wrap("", 5), [""]);
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
