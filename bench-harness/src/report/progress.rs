//! The live progress line, drawn only when stdout is a terminal.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use crate::worker::Totals;

/// A one-line, per-second progress display.
#[derive(Debug)]
pub struct ProgressLine {
    tty: bool,
    last: Option<(Instant, Totals)>,
    drawn: bool,
}

impl Default for ProgressLine {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressLine {
    /// A line that draws only if stdout is a TTY.
    #[must_use]
    pub fn new() -> Self {
        Self {
            tty: std::io::stdout().is_terminal(),
            last: None,
            drawn: false,
        }
    }

    /// The text for `now` given the previous sample.
    #[must_use]
    pub fn render(prev: Option<&(Instant, Totals)>, now: Instant, t: &Totals) -> String {
        let (dt, p) = match prev {
            Some((at, p)) => (now.duration_since(*at).as_secs_f64().max(1e-3), p.clone()),
            None => (1.0, Totals::default()),
        };
        let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / dt;
        format!(
            "conns {:>8} (+{:>7.0}/s)  fail {:>6} (+{:.0}/s)  deliveries {:>10} ({:>9.0}/s)  reconnects {:>7}  replies {:>8}",
            t.established,
            rate(t.handshakes, p.handshakes),
            t.failures,
            rate(t.failures, p.failures),
            t.deliveries,
            rate(t.deliveries, p.deliveries),
            t.reconnects,
            t.replies,
        )
    }

    /// Redraws with new totals.
    pub fn update(&mut self, t: &Totals) {
        let now = Instant::now();
        if self.tty {
            let line = Self::render(self.last.as_ref(), now, t);
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K{line}");
            let _ = out.flush();
            self.drawn = true;
        }
        self.last = Some((now, t.clone()));
    }

    /// Erases the line before other output.
    pub fn clear(&mut self) {
        if self.drawn {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K");
            let _ = out.flush();
            self.drawn = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rates_from_deltas() {
        let t0 = Instant::now();
        let prev = (
            t0,
            Totals {
                handshakes: 100,
                deliveries: 0,
                ..Totals::default()
            },
        );
        let now = t0 + Duration::from_secs(2);
        let t = Totals {
            established: 300,
            handshakes: 300,
            deliveries: 1000,
            ..Totals::default()
        };
        let s = ProgressLine::render(Some(&prev), now, &t);
        assert!(s.contains("+    100/s"), "{s}");
        assert!(s.contains("500/s"), "{s}");
    }
}
