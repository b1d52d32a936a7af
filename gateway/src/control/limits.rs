//! The control listener's limits (`[listen] control_max_connections`,
//! `control_head_timeout_ms`, `control_idle_timeout_ms`; docs/SECURITY.md)
//! and the timing rules behind them, kept apart from the I/O so they can be
//! tested with simulated time: every function takes `now`, none reads a
//! clock.

use protocol::time::Millis;
use tuning::config::ListenConfig;

/// The limits one shard's control listener enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlLimits {
    /// Most connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Time a request has to arrive whole (`None`: no limit).
    pub head_timeout_ms: Option<u64>,
    /// Time a connection may sit with no request in progress (`None`: no
    /// limit).
    pub idle_timeout_ms: Option<u64>,
}

impl ControlLimits {
    /// The limits `[listen]` asks for (0 turns a timeout off).
    pub fn from_config(listen: &ListenConfig) -> Self {
        let ms = |v: u32| (v > 0).then_some(u64::from(v));
        Self {
            max_connections: listen.control_max_connections as usize,
            head_timeout_ms: ms(listen.control_head_timeout_ms),
            idle_timeout_ms: ms(listen.control_idle_timeout_ms),
        }
    }
}

impl Default for ControlLimits {
    fn default() -> Self {
        Self::from_config(&ListenConfig::default())
    }
}

/// What the control listener counted since the shard started; the shard
/// copies them into its `ShardStats` (`/v1/stats`, `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControlCounters {
    /// Connections over `control_max_connections`, answered 503 and closed.
    pub refused: u64,
    /// Requests not complete within `control_head_timeout_ms`, answered
    /// 408 (or closed silently when nothing of them had arrived).
    pub head_timeouts: u64,
    /// Keep-alive connections closed after `control_idle_timeout_ms`
    /// without a request.
    pub idle_closes: u64,
}

/// What a connection is doing, as far as its timeouts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Receiving a request, or waiting for the first one of a new
    /// connection: the head timeout runs. `started` says whether any byte
    /// of it is buffered (then it is answered 408, else closed silently).
    Request {
        /// Bytes of the request are buffered.
        started: bool,
    },
    /// No request in progress (answers may still be leaving): the idle
    /// timeout runs.
    Idle,
    /// A request is with the shard, or the connection is closing: none of
    /// the listener's timeouts runs (the shard bounds its own requests).
    Busy,
}

impl Phase {
    /// When a connection in this phase since `since` expires, if ever.
    pub(super) fn deadline(self, limits: &ControlLimits, since: Millis) -> Option<Millis> {
        let ms = match self {
            Phase::Request { .. } => limits.head_timeout_ms?,
            Phase::Idle => limits.idle_timeout_ms?,
            Phase::Busy => return None,
        };
        Some(since.saturating_add(ms))
    }
}

/// The earliest deadline among the connections, kept as a lower bound:
/// a connection whose deadline moves earlier lowers it at once, one whose
/// deadline moves later or goes away leaves it be, and a rescan at the
/// bound sets a new one from the deadlines left. So the shard never
/// sleeps past a deadline, wakes early at most once per stale bound, and
/// with no connections never wakes for them at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct EarliestDeadline(Option<Millis>);

impl EarliestDeadline {
    /// Takes a connection's new deadline into account.
    pub(super) fn note(&mut self, deadline: Option<Millis>) {
        if let Some(at) = deadline {
            self.0 = Some(self.0.map_or(at, |e| e.min(at)));
        }
    }

    /// Whether a rescan is due at `now`.
    pub(super) fn due(&self, now: Millis) -> bool {
        self.0.is_some_and(|at| at <= now)
    }

    /// The bound (when the shard must wake next for its connections).
    pub(super) fn get(&self) -> Option<Millis> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ControlLimits = ControlLimits {
        max_connections: 4,
        head_timeout_ms: Some(500),
        idle_timeout_ms: Some(2_000),
    };

    #[test]
    fn each_phase_has_its_own_timeout() {
        let since = Millis(1_000);
        let head = Phase::Request { started: true };
        assert_eq!(head.deadline(&LIMITS, since), Some(Millis(1_500)));
        let fresh = Phase::Request { started: false };
        assert_eq!(fresh.deadline(&LIMITS, since), Some(Millis(1_500)));
        assert_eq!(Phase::Idle.deadline(&LIMITS, since), Some(Millis(3_000)));
        assert_eq!(Phase::Busy.deadline(&LIMITS, since), None);
        let off = ControlLimits {
            head_timeout_ms: None,
            idle_timeout_ms: None,
            ..LIMITS
        };
        assert_eq!(head.deadline(&off, since), None);
        assert_eq!(Phase::Idle.deadline(&off, since), None);
        assert_eq!(
            Phase::Idle.deadline(&LIMITS, Millis(u64::MAX)),
            Some(Millis(u64::MAX))
        );
    }

    #[test]
    fn limits_come_from_listen_and_zero_is_off() {
        let d = ControlLimits::default();
        assert_eq!(d.max_connections, 1024);
        assert_eq!(d.head_timeout_ms, Some(10_000));
        assert_eq!(d.idle_timeout_ms, Some(60_000));
        let listen = ListenConfig {
            control_head_timeout_ms: 0,
            control_idle_timeout_ms: 0,
            ..ListenConfig::default()
        };
        let off = ControlLimits::from_config(&listen);
        assert_eq!((off.head_timeout_ms, off.idle_timeout_ms), (None, None));
    }

    #[test]
    fn the_bound_only_moves_earlier() {
        let mut e = EarliestDeadline::default();
        assert_eq!(e.get(), None);
        assert!(!e.due(Millis(u64::MAX)), "nothing to wake for");
        e.note(None);
        assert_eq!(e.get(), None);
        e.note(Some(Millis(900)));
        e.note(Some(Millis(1_200)));
        assert_eq!(e.get(), Some(Millis(900)));
        assert!(!e.due(Millis(899)));
        assert!(e.due(Millis(900)));
        // A rescan starts a new bound from the deadlines left.
        let mut e = EarliestDeadline::default();
        e.note(Some(Millis(1_200)));
        assert!(!e.due(Millis(900)));
    }
}
