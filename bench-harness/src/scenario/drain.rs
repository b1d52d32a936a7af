//! The end of a delivery phase, judged on progress, and the verdicts on
//! deliveries and connections every load scenario applies.
//!
//! A delivery phase starts when the last message has been sent. It ends
//! when every expected delivery is in ([`PhaseEnd::Complete`]), or when no
//! delivery has arrived for the quiet period (`--quiet-secs`,
//! [`PhaseEnd::Quiet`]), or at the hard cap (`--max-drain-secs`,
//! [`PhaseEnd::Cap`]), whichever comes first. So a slow target is waited
//! for while it still delivers, and a run that stops delivering ends
//! after the quiet period rather than after a fixed window.
//!
//! The nominal drain deadline is `--drain-secs` after the phase started:
//! what a fixed window would have waited. A delivery the workers reported
//! after that deadline but before the phase ended is **late**; an expected
//! delivery that never arrived by the end of the phase is **lost**. Late
//! deliveries are not lost: the figures say the target was slow, not that
//! it dropped them. Workers report progress a few times a second, so
//! "after the deadline" is as precise as that report.

use std::time::Duration;

/// Why a delivery phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseEnd {
    /// Every expected delivery arrived.
    Complete,
    /// No delivery arrived for the quiet period.
    Quiet,
    /// The hard cap passed while deliveries still arrived.
    Cap,
    /// The workers stopped reporting (they exited).
    Stopped,
}

impl PhaseEnd {
    /// A name for reports.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Quiet => "quiet",
            Self::Cap => "cap",
            Self::Stopped => "workers stopped",
        }
    }
}

/// The state of one delivery phase, fed with (time, deliveries so far);
/// time is whatever clock the caller uses (tests simulate it).
#[derive(Debug, Clone)]
pub struct DrainPhase {
    want: u64,
    nominal: Duration,
    quiet: Duration,
    cap: Duration,
    last_count: u64,
    last_progress: Duration,
    at_deadline: Option<u64>,
    ended: Option<(PhaseEnd, Duration)>,
}

impl DrainPhase {
    /// A phase expecting `want` deliveries, with the nominal deadline,
    /// quiet period and cap measured from its start.
    #[must_use]
    pub fn new(want: u64, nominal: Duration, quiet: Duration, cap: Duration) -> Self {
        Self {
            want,
            nominal,
            quiet,
            cap: cap.max(nominal),
            last_count: 0,
            last_progress: Duration::ZERO,
            at_deadline: None,
            ended: None,
        }
    }

    /// Takes the deliveries counted `at` after the phase started; returns
    /// how the phase ended once it has (and keeps returning that).
    pub fn observe(&mut self, at: Duration, delivered: u64) -> Option<PhaseEnd> {
        if let Some((end, _)) = self.ended {
            return Some(end);
        }
        if at > self.nominal && self.at_deadline.is_none() {
            // The first observation past the deadline: what had arrived
            // by then is the count of the last one before it.
            self.at_deadline = Some(self.last_count);
        }
        if delivered > self.last_count {
            self.last_count = delivered;
            self.last_progress = at;
        }
        let end = if self.last_count >= self.want {
            Some(PhaseEnd::Complete)
        } else if at.saturating_sub(self.last_progress) >= self.quiet {
            Some(PhaseEnd::Quiet)
        } else if at >= self.cap {
            Some(PhaseEnd::Cap)
        } else {
            None
        };
        if let Some(e) = end {
            if at <= self.nominal {
                self.at_deadline = Some(self.last_count);
            }
            self.ended = Some((e, at));
        }
        end
    }

    /// How long until the phase must be looked at again (the earliest of
    /// the quiet period's and the cap's expiry), from `at`.
    #[must_use]
    pub fn next_check(&self, at: Duration) -> Duration {
        let quiet_end = self.last_progress + self.quiet;
        let deadline = if at < self.nominal {
            self.nominal
        } else {
            self.cap
        };
        quiet_end
            .min(deadline)
            .min(self.cap)
            .saturating_sub(at)
            .max(Duration::from_millis(1))
    }

    /// Deliveries expected.
    #[must_use]
    pub fn want(&self) -> u64 {
        self.want
    }

    /// Deliveries counted by the nominal deadline (all of them when the
    /// phase ended before it).
    #[must_use]
    pub fn by_deadline(&self) -> u64 {
        self.at_deadline.unwrap_or(self.last_count)
    }

    /// Late and lost, given the unique expected deliveries the workers
    /// finally reported (their exact count, which may differ from the
    /// progress count by what arrived while they stopped).
    #[must_use]
    pub fn late_and_lost(&self, unique: u64) -> (u64, u64) {
        let unique = unique.min(self.want);
        let late = unique.saturating_sub(self.by_deadline().min(unique));
        (late, self.want - unique)
    }

    /// How and when (from the phase's start) the phase ended.
    #[must_use]
    pub fn ended(&self) -> Option<(PhaseEnd, Duration)> {
        self.ended
    }
}

/// The INVALID reason when expected deliveries were lost; none when the
/// scenario's behaviour under test is loss (`loss_is_tested` says which
/// behaviour, e.g. a slow-consumer policy), which the report then says.
#[must_use]
pub fn judge_loss(lost: u64, want: u64, loss_is_tested: Option<&str>) -> Vec<String> {
    match (lost, loss_is_tested) {
        (0, _) | (_, Some(_)) => Vec::new(),
        (lost, None) => vec![format!(
            "{lost} of {want} expected deliveries were lost (never arrived, the phase ended \
             without them)"
        )],
    }
}

/// The INVALID reasons about connections: any attempt that never became a
/// session (beyond `allowed`), or failures of 1 % or more of the
/// connections. `first_failure` names the most frequent reason.
#[must_use]
pub fn judge_connections(
    attempts: u64,
    established: u64,
    failures: u64,
    connections: u64,
    allowed: u64,
    first_failure: Option<&str>,
) -> Vec<String> {
    let mut why = Vec::new();
    let reason = first_failure.map_or(String::new(), |r| format!(" (most often: {r})"));
    let failed_connects = attempts.saturating_sub(established);
    if failed_connects > allowed {
        why.push(format!(
            "{failed_connects} of {attempts} connection attempts failed before their session \
             was established{reason}; --allow-connect-failures {allowed}"
        ));
    }
    let base = connections.max(attempts).max(1);
    if failures > 0 && failures * 100 >= base {
        why.push(format!(
            "{failures} connection failures, {:.2} % of {base} connections (1 % or more){reason}",
            failures as f64 * 100.0 / base as f64
        ));
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds (ms, count) points until the phase ends.
    fn run(phase: &mut DrainPhase, points: &[(u64, u64)]) -> Option<PhaseEnd> {
        points.iter().find_map(|&(t, n)| phase.observe(ms(t), n))
    }

    #[test]
    fn complete_before_the_deadline_has_nothing_late_or_lost() {
        let mut p = DrainPhase::new(100, ms(1000), ms(5000), ms(60_000));
        assert_eq!(
            run(&mut p, &[(100, 40), (300, 100)]),
            Some(PhaseEnd::Complete)
        );
        assert_eq!(p.late_and_lost(100), (0, 0));
        assert_eq!(p.ended(), Some((PhaseEnd::Complete, ms(300))));
    }

    #[test]
    fn deliveries_after_the_deadline_are_late_not_lost() {
        // 1 s nominal window; the target keeps delivering slowly until 8 s.
        let mut p = DrainPhase::new(100, ms(1000), ms(2000), ms(60_000));
        let points = [(500, 30), (1000, 50), (1500, 60), (4000, 80), (8000, 100)];
        assert_eq!(run(&mut p, &points), Some(PhaseEnd::Complete));
        // A fixed 1 s window would have called 50 of them lost.
        assert_eq!(p.by_deadline(), 50);
        assert_eq!(p.late_and_lost(100), (50, 0));
    }

    #[test]
    fn a_quiet_period_ends_the_phase_and_the_missing_ones_are_lost() {
        let mut p = DrainPhase::new(100, ms(1000), ms(2000), ms(60_000));
        let points = [(200, 90), (2500, 95), (3000, 95), (4000, 95), (4600, 95)];
        assert_eq!(run(&mut p, &points), Some(PhaseEnd::Quiet));
        assert_eq!(p.ended().map(|e| e.1), Some(ms(4600)));
        assert_eq!(p.late_and_lost(95), (5, 5));
        // It stays ended.
        assert_eq!(p.observe(ms(9000), 100), Some(PhaseEnd::Quiet));
    }

    #[test]
    fn nothing_at_all_ends_after_the_quiet_period() {
        let mut p = DrainPhase::new(10, ms(1000), ms(500), ms(60_000));
        assert_eq!(p.observe(ms(200), 0), None);
        assert_eq!(p.observe(ms(500), 0), Some(PhaseEnd::Quiet));
        assert_eq!(p.late_and_lost(0), (0, 10));
    }

    #[test]
    fn the_cap_ends_a_phase_that_still_trickles() {
        let mut p = DrainPhase::new(1000, ms(1000), ms(5000), ms(10_000));
        let points: Vec<(u64, u64)> = (1..=20).map(|i| (i * 1000, i * 10)).collect();
        assert_eq!(run(&mut p, &points), Some(PhaseEnd::Cap));
        assert_eq!(p.ended().map(|e| e.1), Some(ms(10_000)));
        assert_eq!(p.late_and_lost(100), (90, 900));
    }

    #[test]
    fn the_next_check_is_the_quiet_end_or_the_cap() {
        let mut p = DrainPhase::new(10, ms(1000), ms(3000), ms(20_000));
        assert_eq!(p.observe(ms(2000), 5), None);
        assert_eq!(p.next_check(ms(2500)), ms(2500));
        assert_eq!(p.next_check(ms(500)), ms(500), "the nominal deadline first");
    }

    #[test]
    fn loss_is_invalid_unless_it_is_the_behaviour_under_test() {
        assert!(judge_loss(0, 10, None).is_empty());
        assert_eq!(judge_loss(1, 10, None).len(), 1);
        assert!(judge_loss(3, 10, Some("drop-oldest slow consumer")).is_empty());
    }

    #[test]
    fn connection_verdicts() {
        assert!(judge_connections(100, 100, 0, 100, 0, None).is_empty());
        // Every connect failed (wrong secret): invalid.
        let why = judge_connections(100, 0, 100, 100, 0, Some("gateway error UNAUTHORIZED (6)"));
        assert_eq!(why.len(), 2, "{why:?}");
        assert!(why[0].contains("UNAUTHORIZED"), "{why:?}");
        // One failed connect is invalid by default, allowed with a budget.
        assert_eq!(judge_connections(1000, 999, 1, 1000, 0, None).len(), 1);
        assert!(judge_connections(1000, 999, 1, 1000, 1, None).is_empty());
        // Losing 1 % of established connections later is invalid too.
        assert_eq!(judge_connections(1000, 1000, 10, 1000, 0, None).len(), 1);
        assert!(judge_connections(1000, 1000, 9, 1000, 0, None).is_empty());
    }
}
