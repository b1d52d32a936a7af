//! Rejected handshakes, summarised for the log: a wrong secret or an
//! expired token must leave a trace an operator can find, but a client
//! retrying in a loop must not flood the log. Each shard counts its
//! rejections by error code and logs one line per code per interval, with
//! the latest reason given.

use protocol::proto::ErrorCode;
use protocol::time::Millis;

/// How often a shard logs its rejection summary (when it has one).
pub const SUMMARY_MS: u64 = 10_000;

/// Rejections counted since the last summary.
#[derive(Debug, Default)]
pub struct RejectionLog {
    /// (code, count, latest reason), in first-seen order; a handful of codes.
    counts: Vec<(ErrorCode, u64, String)>,
    /// When the last summary was logged (`None`: never, so the first
    /// rejection is logged at once).
    last_summary: Option<Millis>,
}

/// One line of a summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The error code the clients were refused with.
    pub code: ErrorCode,
    /// How many were refused with it since the last summary.
    pub count: u64,
    /// The reason given to the latest of them.
    pub latest: String,
}

impl RejectionLog {
    /// Counts one handshake refused with `code` for `reason`.
    pub fn record(&mut self, code: ErrorCode, reason: &str) {
        match self.counts.iter_mut().find(|(c, _, _)| *c == code) {
            Some((_, n, latest)) => {
                *n += 1;
                if latest != reason {
                    latest.clear();
                    latest.push_str(reason);
                }
            }
            None => self.counts.push((code, 1, reason.to_string())),
        }
    }

    /// When the counted rejections are due to be logged (`None`: none counted).
    pub fn next_due(&self) -> Option<Millis> {
        if self.counts.is_empty() {
            return None;
        }
        Some(
            self.last_summary
                .map_or(Millis(0), |t| t.saturating_add(SUMMARY_MS)),
        )
    }

    /// The summary due at `now` (once per [`SUMMARY_MS`]), emptying the counts.
    pub fn due(&mut self, now: Millis) -> Vec<Summary> {
        let quiet = self.last_summary.is_some_and(|t| now.since(t) < SUMMARY_MS);
        if self.counts.is_empty() || quiet {
            return Vec::new();
        }
        self.last_summary = Some(now);
        self.counts
            .drain(..)
            .map(|(code, count, latest)| Summary {
                code,
                count,
                latest,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_are_summarised_once_per_interval_by_code() {
        let mut log = RejectionLog::default();
        assert!(log.due(Millis(100)).is_empty(), "nothing to say");
        assert_eq!(log.next_due(), None);
        log.record(ErrorCode::Unauthorized, "first");
        assert_eq!(log.next_due(), Some(Millis(0)), "due at once");
        assert_eq!(log.due(Millis(200)).len(), 1, "the first is logged at once");
        log.record(ErrorCode::Unauthorized, "InvalidSignature");
        assert_eq!(log.next_due(), Some(Millis(10_200)));
        assert!(log.due(Millis(10_000)).is_empty(), "then once per interval");
        log.record(ErrorCode::Unauthorized, "InvalidSignature");
        log.record(ErrorCode::TokenExpired, "token expired");
        log.record(ErrorCode::Unauthorized, "malformed token");
        let s = log.due(Millis(20_000));
        assert_eq!(
            s,
            vec![
                Summary {
                    code: ErrorCode::Unauthorized,
                    count: 3,
                    latest: "malformed token".into()
                },
                Summary {
                    code: ErrorCode::TokenExpired,
                    count: 1,
                    latest: "token expired".into()
                },
            ]
        );
        // Within the interval: counted, not logged.
        log.record(ErrorCode::Unauthorized, "again");
        assert!(log.due(Millis(25_000)).is_empty());
        assert_eq!(log.due(Millis(30_200))[0].count, 1);
        assert!(log.due(Millis(60_000)).is_empty(), "counts were emptied");
    }
}
