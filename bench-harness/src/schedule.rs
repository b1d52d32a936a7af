//! Open-loop schedules: event `i` is due at `start + i / rate`, whatever
//! happened to earlier events. The harness records how late it actually
//! acted (its own schedule lag) and declares a run INVALID when it could not
//! keep the requested rate.

use std::time::{Duration, Instant};

use crate::histo::Latency;

/// A fixed-rate open-loop schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    interval_ns: f64,
    total: u64,
    next: u64,
    /// Distance between this schedule's events (its share of a schedule
    /// split over several senders).
    step: u64,
    first: u64,
}

impl Schedule {
    /// `total` events at `rate` per second from `start` (rate ≤ 0 = all at once).
    #[must_use]
    pub fn new(start: Instant, rate: f64, total: u64) -> Self {
        let interval_ns = if rate > 0.0 { 1e9 / rate } else { 0.0 };
        Self {
            start,
            interval_ns,
            total,
            next: 0,
            step: 1,
            first: 0,
        }
    }

    /// Share `part` of `parts` of the schedule `new(start, rate, total)`:
    /// events `part`, `part + parts`, … at their times in the whole. Each
    /// sender of a split schedule sleeps `parts` intervals between events
    /// instead of walking past everybody else's.
    #[must_use]
    pub fn share(start: Instant, rate: f64, total: u64, part: u64, parts: u64) -> Self {
        Self {
            next: part,
            step: parts.max(1),
            first: part,
            ..Self::new(start, rate, total)
        }
    }

    /// When event `i` is due.
    #[must_use]
    pub fn due(&self, i: u64) -> Instant {
        self.start + Duration::from_nanos((self.interval_ns * i as f64) as u64)
    }

    /// Index and due time of the next event if it is due at `now`; advances.
    pub fn pop_due(&mut self, now: Instant) -> Option<(u64, Instant)> {
        if self.next >= self.total {
            return None;
        }
        let due = self.due(self.next);
        if due > now {
            return None;
        }
        let i = self.next;
        self.next += self.step;
        Some((i, due))
    }

    /// When the next event is due (`None` once all are issued).
    #[must_use]
    pub fn next_due(&self) -> Option<Instant> {
        (self.next < self.total).then(|| self.due(self.next))
    }

    /// Whether events are spread over time (a rate was given); an
    /// unpaced schedule ("as fast as possible") has no lateness to measure.
    #[must_use]
    pub fn is_paced(&self) -> bool {
        self.interval_ns > 0.0
    }

    /// Events issued so far.
    #[must_use]
    pub fn issued(&self) -> u64 {
        self.next
            .min(self.total.max(self.first))
            .saturating_sub(self.first)
            .div_ceil(self.step)
    }

    /// Whether every event was issued.
    #[must_use]
    pub fn done(&self) -> bool {
        self.next >= self.total
    }
}

/// Limits beyond which the harness's own lateness spoils a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LagBudget {
    /// Largest acceptable 99th percentile of schedule lag, µs.
    pub p99_us: u64,
    /// Smallest acceptable achieved/requested rate ratio.
    pub min_rate_ratio: f64,
}

impl Default for LagBudget {
    fn default() -> Self {
        Self {
            p99_us: 10_000,
            min_rate_ratio: 0.95,
        }
    }
}

/// Why a run is INVALID, if it is; empty when valid.
#[must_use]
pub fn judge(
    lag: &Latency,
    requested_rate: f64,
    achieved_rate: f64,
    budget: LagBudget,
    what: &str,
) -> Vec<String> {
    let mut why = Vec::new();
    let p99 = lag.quantile_us(0.99);
    if lag.count() > 0 && p99 > budget.p99_us {
        why.push(format!(
            "{what}: harness schedule lag p99 {p99} µs exceeds {} µs (the harness, not the target, fell behind)",
            budget.p99_us
        ));
    }
    if requested_rate > 0.0 && achieved_rate < requested_rate * budget.min_rate_ratio {
        why.push(format!(
            "{what}: achieved {achieved_rate:.0}/s of the requested {requested_rate:.0}/s (< {:.0}%)",
            budget.min_rate_ratio * 100.0
        ));
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_open_loop() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 1000.0, 5);
        assert_eq!(s.due(3) - t0, Duration::from_millis(3));
        // 2.5 ms late: events 0, 1, 2 are all due at once (not re-based).
        let now = t0 + Duration::from_micros(2500);
        let got: Vec<_> = std::iter::from_fn(|| s.pop_due(now))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(s.next_due(), Some(t0 + Duration::from_millis(3)));
        let later = t0 + Duration::from_secs(1);
        assert_eq!(std::iter::from_fn(|| s.pop_due(later)).count(), 2);
        assert!(s.done());
        assert_eq!(s.next_due(), None);
        let mut burst = Schedule::new(t0, 0.0, 3);
        assert_eq!(std::iter::from_fn(|| burst.pop_due(t0)).count(), 3);
    }

    #[test]
    fn shares_split_the_schedule_without_overlap() {
        let t0 = Instant::now();
        let whole: Vec<_> = {
            let mut s = Schedule::new(t0, 1000.0, 10);
            std::iter::from_fn(|| s.pop_due(t0 + Duration::from_secs(1))).collect()
        };
        let mut merged = Vec::new();
        for part in 0..3 {
            let mut s = Schedule::share(t0, 1000.0, 10, part, 3);
            assert_eq!(s.issued(), 0);
            let mine: Vec<_> =
                std::iter::from_fn(|| s.pop_due(t0 + Duration::from_secs(1))).collect();
            assert!(mine.iter().all(|(i, _)| i % 3 == part));
            assert_eq!(s.issued(), mine.len() as u64);
            assert!(s.done());
            merged.extend(mine);
        }
        merged.sort();
        assert_eq!(
            merged, whole,
            "the shares are the whole schedule, same times"
        );
        let mut late = Schedule::share(t0, 1000.0, 10, 1, 3);
        assert_eq!(late.next_due(), Some(t0 + Duration::from_millis(1)));
        assert_eq!(late.pop_due(t0), None, "event 1 is not due at t0");
    }

    #[test]
    fn judge_flags_lag_and_rate() {
        let mut ok = Latency::new();
        ok.record_n_us(50, 1000);
        assert!(judge(&ok, 1000.0, 999.0, LagBudget::default(), "x").is_empty());
        let mut late = Latency::new();
        late.record_n_us(50_000, 100);
        let why = judge(&late, 1000.0, 500.0, LagBudget::default(), "connect");
        assert_eq!(why.len(), 2, "{why:?}");
        assert!(why[0].contains("schedule lag"));
        assert!(why[1].contains("achieved 500/s"));
    }
}
