//! The payload every measured message carries: its sequence number and its
//! intended send time, so the receiver computes latency from the schedule
//! (coordinated-omission corrected) without asking the sender.
//!
//! Text, so it passes unchanged through JSON push bodies, MQTT and NATS:
//! `"<seq> <intended_us> "` then `.` padding up to the payload size.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch (the clock shared by every process on the host).
#[must_use]
pub fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A decoded stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Message sequence number within the run.
    pub seq: u64,
    /// When the message was meant to be sent, µs since the Unix epoch.
    pub intended_us: u64,
}

/// The payload for `stamp`, padded to at least `size` bytes.
#[must_use]
pub fn encode(stamp: Stamp, size: usize) -> String {
    let mut s = format!("{} {} ", stamp.seq, stamp.intended_us);
    if s.len() < size {
        s.extend(std::iter::repeat_n('.', size - s.len()));
    }
    s
}

/// Reads a stamp from the start of a payload; `None` if it carries none.
#[must_use]
pub fn decode(payload: &[u8]) -> Option<Stamp> {
    let mut it = payload.split(|&b| b == b' ');
    let seq = std::str::from_utf8(it.next()?).ok()?.parse().ok()?;
    let intended_us = std::str::from_utf8(it.next()?).ok()?.parse().ok()?;
    Some(Stamp { seq, intended_us })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let s = Stamp {
            seq: 7,
            intended_us: 1_700_000_000_123_456,
        };
        let p = encode(s, 256);
        assert_eq!(p.len(), 256);
        assert_eq!(decode(p.as_bytes()), Some(s));
        assert_eq!(encode(s, 1).len(), "7 1700000000123456 ".len());
        assert_eq!(decode(b"garbage"), None);
        assert_eq!(decode(b"1 x "), None);
        assert!(wall_us() > 1_600_000_000_000_000);
    }
}
