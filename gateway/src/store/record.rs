//! The record format of the store's log, and the segment file header.
//!
//! A segment file is [`SEGMENT_MAGIC`] followed by records, back to back:
//!
//! ```text
//! len   u32 LE   bytes of kind + body (1..=MAX_RECORD_LEN)
//! crc   u32 LE   CRC-32 (IEEE) of the len bytes, the kind and the body
//! kind  u8       the record's kind (below)
//! body  len-1 bytes, little-endian fields (below)
//! ```
//!
//! Bodies (every `user` is `u16` length + UTF-8 bytes):
//!
//! | kind | body |
//! |---|---|
//! | 1 `Stored` | id u64, stored (unix ms) u64, expires (unix ms) u64, deliveries u16, user, payload (the rest) |
//! | 2 `Removed` | id u64, reason u8 (1 acked, 2 dropped-oldest, 3 purged), user |
//! | 3 `Delivered` | id u64, deliveries u16, user |
//! | 4 `DeadLettered` | id u64, user |
//! | 5 `Expired` | id u64, user |
//! | 6 `HighWater` | mark u64: every push id up to it may have been used |
//!
//! A `Stored` record for an id already stored for the same user is that
//! push moved by compaction: the later copy wins.

/// The first bytes of every segment file: name and format version.
pub const SEGMENT_MAGIC: [u8; 8] = *b"GWSTORE\x01";
/// Bytes before a record's kind: length and checksum.
pub const HEADER_LEN: usize = 8;
/// Largest `len` a record may have: a push of the largest frame the
/// protocol allows (16 MiB) with its fields; anything larger is corrupt.
pub const MAX_RECORD_LEN: u32 = (16 << 20) + 4096;
/// Longest user name a record can carry.
pub const MAX_USER_LEN: usize = u16::MAX as usize;

/// Why a push left an inbox by a `Removed` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    /// A session of the user acked it.
    Acked = 1,
    /// The inbox was full and the policy is drop-oldest.
    DroppedOldest = 2,
    /// The inbox was purged through the control API.
    Purged = 3,
}

/// One record of the log, borrowing from the bytes it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// A durable push entered `user`'s inbox (or moved, see the module).
    Stored {
        /// The push id.
        id: u64,
        /// Wall-clock ms when it was first stored.
        stored_unix_ms: u64,
        /// Wall-clock ms after which it is expired.
        expires_unix_ms: u64,
        /// Deliveries so far (0 for a new push).
        deliveries: u16,
        /// Whose inbox.
        user: &'a str,
        /// The caller's bytes (opaque to the store).
        payload: &'a [u8],
    },
    /// A push left `user`'s inbox.
    Removed {
        /// The push id.
        id: u64,
        /// Why.
        reason: RemoveReason,
        /// Whose inbox.
        user: &'a str,
    },
    /// A push was delivered again: its count is now `deliveries`.
    Delivered {
        /// The push id.
        id: u64,
        /// The count after this delivery.
        deliveries: u16,
        /// Whose inbox.
        user: &'a str,
    },
    /// A push reached its delivery limit unacked and was removed.
    DeadLettered {
        /// The push id.
        id: u64,
        /// Whose inbox.
        user: &'a str,
    },
    /// A push outlived its TTL and was removed.
    Expired {
        /// The push id.
        id: u64,
        /// Whose inbox.
        user: &'a str,
    },
    /// Every push id up to `mark` may have been handed out.
    HighWater {
        /// The mark.
        mark: u64,
    },
}

/// What is wrong with the bytes at some offset, before deciding whether
/// that is a torn tail or corruption (see `recovery.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// The bytes end inside the record (its header or its body).
    Truncated,
    /// The length is 0 or over [`MAX_RECORD_LEN`].
    BadLength(u32),
    /// The checksum does not match; the record ends at this offset.
    BadChecksum {
        /// Offset just after the record.
        end: usize,
    },
    /// The checksum matches but the body is not a record of this format.
    Malformed(&'static str),
}

impl std::fmt::Display for Flaw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated => f.write_str("record cut short by the end of the file"),
            Self::BadLength(n) => write!(f, "record length {n} is out of range"),
            Self::BadChecksum { .. } => f.write_str("record checksum mismatch"),
            Self::Malformed(why) => write!(f, "malformed record: {why}"),
        }
    }
}

impl Record<'_> {
    fn kind(&self) -> u8 {
        match self {
            Self::Stored { .. } => 1,
            Self::Removed { .. } => 2,
            Self::Delivered { .. } => 3,
            Self::DeadLettered { .. } => 4,
            Self::Expired { .. } => 5,
            Self::HighWater { .. } => 6,
        }
    }

    /// The record's length on disk (header included).
    pub fn encoded_len(&self) -> usize {
        let user = |u: &str| 2 + u.len();
        let body = match self {
            Self::Stored {
                user: u, payload, ..
            } => 8 + 8 + 8 + 2 + user(u) + payload.len(),
            Self::Removed { user: u, .. } => 8 + 1 + user(u),
            Self::Delivered { user: u, .. } => 8 + 2 + user(u),
            Self::DeadLettered { user: u, .. } | Self::Expired { user: u, .. } => 8 + user(u),
            Self::HighWater { .. } => 8,
        };
        HEADER_LEN + 1 + body
    }

    /// Appends the record to `out`. The caller keeps user names within
    /// [`MAX_USER_LEN`] and the whole within [`MAX_RECORD_LEN`].
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let len = self.encoded_len() - HEADER_LEN;
        out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.push(self.kind());
        let put_user = |out: &mut Vec<u8>, u: &str| {
            let n = u16::try_from(u.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&u.as_bytes()[..usize::from(n)]);
        };
        match *self {
            Self::Stored {
                id,
                stored_unix_ms,
                expires_unix_ms,
                deliveries,
                user,
                payload,
            } => {
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&stored_unix_ms.to_le_bytes());
                out.extend_from_slice(&expires_unix_ms.to_le_bytes());
                out.extend_from_slice(&deliveries.to_le_bytes());
                put_user(out, user);
                out.extend_from_slice(payload);
            }
            Self::Removed { id, reason, user } => {
                out.extend_from_slice(&id.to_le_bytes());
                out.push(reason as u8);
                put_user(out, user);
            }
            Self::Delivered {
                id,
                deliveries,
                user,
            } => {
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&deliveries.to_le_bytes());
                put_user(out, user);
            }
            Self::DeadLettered { id, user } | Self::Expired { id, user } => {
                out.extend_from_slice(&id.to_le_bytes());
                put_user(out, user);
            }
            Self::HighWater { mark } => out.extend_from_slice(&mark.to_le_bytes()),
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&out[start..start + 4]);
        crc.update(&out[start + HEADER_LEN..]);
        let sum = crc.finalize().to_le_bytes();
        out[start + 4..start + HEADER_LEN].copy_from_slice(&sum);
    }

    /// Decodes the record at the start of `buf`; returns it and its length
    /// on disk.
    pub fn decode(buf: &[u8]) -> Result<(Record<'_>, usize), Flaw> {
        let header = buf.get(..HEADER_LEN).ok_or(Flaw::Truncated)?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let sum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 || len > MAX_RECORD_LEN {
            return Err(Flaw::BadLength(len));
        }
        let end = HEADER_LEN + len as usize;
        let rest = buf.get(HEADER_LEN..end).ok_or(Flaw::Truncated)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header[..4]);
        crc.update(rest);
        if crc.finalize() != sum {
            return Err(Flaw::BadChecksum { end });
        }
        let mut r = Reader(&rest[1..]);
        let record = match rest[0] {
            1 => Record::Stored {
                id: r.u64()?,
                stored_unix_ms: r.u64()?,
                expires_unix_ms: r.u64()?,
                deliveries: r.u16()?,
                user: r.user()?,
                payload: r.rest(),
            },
            2 => {
                let id = r.u64()?;
                let reason = match r.u8()? {
                    1 => RemoveReason::Acked,
                    2 => RemoveReason::DroppedOldest,
                    3 => RemoveReason::Purged,
                    _ => return Err(Flaw::Malformed("unknown removal reason")),
                };
                Record::Removed {
                    id,
                    reason,
                    user: r.user()?,
                }
            }
            3 => Record::Delivered {
                id: r.u64()?,
                deliveries: r.u16()?,
                user: r.user()?,
            },
            4 => Record::DeadLettered {
                id: r.u64()?,
                user: r.user()?,
            },
            5 => Record::Expired {
                id: r.u64()?,
                user: r.user()?,
            },
            6 => Record::HighWater { mark: r.u64()? },
            _ => return Err(Flaw::Malformed("unknown record kind")),
        };
        if !r.0.is_empty() {
            return Err(Flaw::Malformed("bytes after the record's fields"));
        }
        Ok((record, end))
    }
}

/// Reads little-endian fields off the front of a body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Flaw> {
        if self.0.len() < n {
            return Err(Flaw::Malformed("body shorter than its fields"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Flaw> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Flaw> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u64(&mut self) -> Result<u64, Flaw> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn user(&mut self) -> Result<&'a str, Flaw> {
        let n = self.u16()?;
        std::str::from_utf8(self.take(usize::from(n))?)
            .map_err(|_| Flaw::Malformed("user name is not UTF-8"))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Record<'static>> {
        vec![
            Record::Stored {
                id: 7,
                stored_unix_ms: 1_600_000_000_000,
                expires_unix_ms: 1_700_000_000_000,
                deliveries: 2,
                user: "alice",
                payload: b"hello",
            },
            Record::Removed {
                id: 7,
                reason: RemoveReason::DroppedOldest,
                user: "alice",
            },
            Record::Delivered {
                id: 9,
                deliveries: 3,
                user: "b",
            },
            Record::DeadLettered { id: 1, user: "" },
            Record::Expired {
                id: u64::MAX,
                user: "ü",
            },
            Record::HighWater { mark: 1 << 40 },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        let mut buf = Vec::new();
        for r in all() {
            let before = buf.len();
            r.encode(&mut buf);
            assert_eq!(buf.len() - before, r.encoded_len());
        }
        let mut at = 0;
        for r in all() {
            let (back, len) = Record::decode(&buf[at..]).unwrap();
            assert_eq!(back, r);
            at += len;
        }
        assert_eq!(at, buf.len());
    }

    #[test]
    fn flaws_are_told_apart() {
        let mut buf = Vec::new();
        all()[0].encode(&mut buf);
        assert_eq!(Record::decode(&buf[..5]), Err(Flaw::Truncated));
        assert_eq!(Record::decode(&buf[..buf.len() - 1]), Err(Flaw::Truncated));
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            Record::decode(&bad),
            Err(Flaw::BadChecksum { end: buf.len() })
        );
        assert_eq!(Record::decode(&[0; 12]), Err(Flaw::BadLength(0)));
        // A well-summed record of an unknown kind is malformed, not torn.
        let mut odd = vec![1, 0, 0, 0, 0, 0, 0, 0, 99];
        let mut crc = crc32fast::Hasher::new();
        crc.update(&odd[..4]);
        crc.update(&odd[8..]);
        odd[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
        assert_eq!(
            Record::decode(&odd),
            Err(Flaw::Malformed("unknown record kind"))
        );
    }
}
