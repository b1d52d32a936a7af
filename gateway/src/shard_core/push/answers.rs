//! Push answers that wait for counts. A push to users or to a topic is
//! answered `{"id": N, "online": K}` once every holding shard has said how
//! many sessions it enqueued the push to: the owner that resolves each user
//! or topic plans how many holders will count
//! ([`Message::PushPlan`](super::Message::PushPlan)), each holder counts
//! ([`Message::PushCount`](super::Message::PushCount)), both naming the
//! answer by its [`Receipt`]. A batch is answered when all its lines are
//! counted. After [`REQUEST_TIMEOUT_MS`] an answer goes out with what has
//! been counted and `"partial": true`.
//!
//! Answers time out in the order they began (one timeout for all), so
//! their deadlines are a FIFO: the next one is at its front.

use std::collections::VecDeque;

use protocol::time::Millis;
use serde_json::{Value, json};
use slab::Slab;

use super::requests::REQUEST_TIMEOUT_MS;
use super::{Receipt, RequestRef};
use crate::control::Caller;
use crate::control::routes::Response;
use crate::shard_core::ShardCore;

/// The count of one part of an answer: one push (to one or more users, or
/// to a topic), or one run of merged topic pushes of a batch.
#[derive(Debug, Clone)]
pub(super) struct Tally {
    /// Plans still to come: one per user or topic the part was routed to.
    plans_due: u32,
    /// Counts still to come: the holders planned so far less the counts
    /// received (a count can overtake its plan, so this can dip below 0).
    counts_due: i64,
    /// Sessions reached, as counted so far.
    online: u64,
    /// A durable push: the users' owners still to say it is stored.
    stored_due: u32,
    /// A durable push: it is stored for every user so far (false before
    /// the first word, and after any refusal).
    durable: bool,
    /// Why an owner refused to store it, with the HTTP status.
    refused: Option<(u16, Box<str>)>,
}

impl Tally {
    /// A part routed to `names` users or topics.
    pub(super) fn new(names: usize) -> Self {
        Self {
            plans_due: u32::try_from(names).unwrap_or(u32::MAX),
            counts_due: 0,
            online: 0,
            stored_due: 0,
            durable: false,
            refused: None,
        }
    }

    /// A durable push routed to `names` users: its answer also waits for
    /// every user's owner to store it.
    pub(super) fn durable(names: usize) -> Self {
        Self {
            stored_due: u32::try_from(names).unwrap_or(u32::MAX),
            durable: true,
            ..Self::new(names)
        }
    }

    /// Whether every holder has counted (and every owner stored).
    fn done(&self) -> bool {
        self.plans_due == 0 && self.counts_due == 0 && self.stored_due == 0
    }

    /// The HTTP status of an answer made of this part alone.
    fn status(&self) -> u16 {
        self.refused.as_ref().map_or(200, |(status, _)| *status)
    }

    fn answer(&self, id: u64) -> Value {
        let mut v = json!({ "id": id, "online": self.online });
        if self.durable {
            v["stored"] = json!(self.stored_due == 0 && self.refused.is_none());
        }
        if let Some((_, why)) = &self.refused {
            v["error"] = json!(why);
        }
        if !self.done() {
            v["partial"] = json!(true);
        }
        v
    }
}

/// One line of a batch's answer.
#[derive(Debug)]
pub(super) enum Line {
    /// A push whose count is part `part`'s (a run's lines share one).
    Counted {
        /// Push id.
        id: u64,
        /// Its part.
        part: u32,
    },
    /// A push answered without waiting (a broadcast: the census).
    Known {
        /// Push id.
        id: u64,
        /// Sessions online when it was accepted.
        online: u64,
    },
    /// A line refused.
    Refused(String),
}

/// What an answer is made of.
#[derive(Debug)]
pub(super) enum Shape {
    /// `POST /v1/push`.
    One {
        /// Push id.
        id: u64,
        /// Its count.
        tally: Tally,
    },
    /// `POST /v1/push/batch`: its lines in order, and its parts' counts.
    Batch {
        /// The lines.
        lines: Vec<Line>,
        /// The parts, by [`Receipt::part`].
        tallies: Vec<Tally>,
    },
}

impl Shape {
    fn tally_mut(&mut self, part: u32) -> Option<&mut Tally> {
        match self {
            Shape::One { tally, .. } => (part == 0).then_some(tally),
            Shape::Batch { tallies, .. } => tallies.get_mut(part as usize),
        }
    }

    /// Parts not counted in full.
    fn open(&self) -> usize {
        match self {
            Shape::One { tally, .. } => usize::from(!tally.done()),
            Shape::Batch { tallies, .. } => tallies.iter().filter(|t| !t.done()).count(),
        }
    }

    /// The HTTP status: a single push's refusal by the store; a batch
    /// says per line.
    fn status(&self) -> u16 {
        match self {
            Shape::One { tally, .. } => tally.status(),
            Shape::Batch { .. } => 200,
        }
    }

    fn body(&self) -> Value {
        match self {
            Shape::One { id, tally } => tally.answer(*id),
            Shape::Batch { lines, tallies } => {
                let results: Vec<Value> = lines
                    .iter()
                    .map(|line| match line {
                        Line::Counted { id, part } => tallies
                            .get(*part as usize)
                            .map_or_else(|| json!({ "id": id }), |t| t.answer(*id)),
                        Line::Known { id, online } => json!({ "id": id, "online": online }),
                        Line::Refused(e) => json!({ "error": e }),
                    })
                    .collect();
                let mut body = json!({ "results": results });
                if self.open() > 0 {
                    body["partial"] = json!(true);
                }
                body
            }
        }
    }
}

#[derive(Debug)]
struct Pending {
    caller: Caller,
    seq: u32,
    /// Parts not counted in full; answered at 0.
    open: usize,
    shape: Shape,
}

/// A pending answer, as receipts name it.
#[derive(Debug, Clone, Copy)]
pub(super) struct AnswerRef {
    key: u32,
    seq: u32,
}

impl AnswerRef {
    /// The receipt for part `part` of this answer, waiting on `shard`.
    pub(super) fn receipt(self, shard: usize, part: u32) -> Receipt {
        Receipt {
            reply_to: RequestRef {
                shard: u16::try_from(shard).unwrap_or(u16::MAX),
                id: self.key,
            },
            seq: self.seq,
            part,
        }
    }
}

/// Push answers this shard waits to give, and when each times out.
#[derive(Debug, Default)]
pub(crate) struct PendingAnswers {
    pending: Slab<Pending>,
    /// (deadline, key, seq) in the order the answers began. The front is
    /// always an answer still waiting; entries behind it whose answers
    /// were given wait to be skipped (16 bytes each, at most as many as
    /// answers given within one timeout).
    deadlines: VecDeque<(Millis, u32, u32)>,
    next_seq: u32,
}

impl PendingAnswers {
    /// Whether (key, seq) names an answer still waiting.
    fn waiting(&self, key: u32, seq: u32) -> bool {
        self.pending.get(key as usize).is_some_and(|p| p.seq == seq)
    }

    /// Drops the deadlines of answers given at the front, so the front is
    /// the next one due.
    fn trim(&mut self) {
        while let Some(&(_, key, seq)) = self.deadlines.front() {
            if self.waiting(key, seq) {
                break;
            }
            self.deadlines.pop_front();
        }
    }
}

impl ShardCore {
    /// Starts waiting for the counts of `shape` for `caller`; the answer
    /// goes out at [`ShardCore::seal_answer`] or later, when the last
    /// count arrives.
    pub(super) fn await_answer(&mut self, now: Millis, caller: Caller, shape: Shape) -> AnswerRef {
        let answers = &mut self.answers;
        answers.next_seq = answers.next_seq.wrapping_add(1);
        let seq = answers.next_seq;
        let key = answers.pending.insert(Pending {
            caller,
            seq,
            open: 0,
            shape,
        }) as u32;
        answers
            .deadlines
            .push_back((now.saturating_add(REQUEST_TIMEOUT_MS), key, seq));
        AnswerRef { key, seq }
    }

    /// The answer's parts are all routed (a batch's lines and parts given
    /// here): answers at once if nothing is left to count.
    pub(super) fn seal_answer(&mut self, at: AnswerRef, batch: Option<(Vec<Line>, Vec<Tally>)>) {
        let Some(p) = self.answers.pending.get_mut(at.key as usize) else {
            return;
        };
        if let Some((lines, tallies)) = batch {
            p.shape = Shape::Batch { lines, tallies };
        }
        p.open = p.shape.open();
        if p.open == 0 {
            self.give_answer(at.key);
        }
    }

    /// A user's or topic's owner planned `holders` counts for `r`.
    pub(super) fn push_planned(&mut self, r: Receipt, holders: u16) {
        self.tally(r, |t| {
            t.plans_due = t.plans_due.saturating_sub(1);
            t.counts_due += i64::from(holders);
        });
    }

    /// A holding shard reached `sessions` sessions for `r`.
    pub(super) fn push_counted(&mut self, r: Receipt, sessions: u32) {
        self.tally(r, |t| {
            t.counts_due -= 1;
            t.online += u64::from(sessions);
        });
    }

    /// A user's owner stored the durable push of `r`, or refused it.
    pub(super) fn push_stored(&mut self, r: Receipt, result: Result<(), (u16, Box<str>)>) {
        self.tally(r, |t| {
            t.stored_due = t.stored_due.saturating_sub(1);
            if let Err(refusal) = result {
                t.refused.get_or_insert(refusal);
            }
        });
    }

    /// Applies `change` to `r`'s part, and answers when that was the
    /// last count the answer waited for. Receipts of answers already
    /// given (timed out) and of parts already counted are ignored.
    fn tally(&mut self, r: Receipt, change: impl FnOnce(&mut Tally)) {
        let key = r.reply_to.id;
        let Some(p) = self.answers.pending.get_mut(key as usize) else {
            return;
        };
        if p.seq != r.seq {
            return;
        }
        let Some(tally) = p.shape.tally_mut(r.part) else {
            return;
        };
        if tally.done() {
            return;
        }
        change(tally);
        if tally.done() {
            p.open = p.open.saturating_sub(1);
            if p.open == 0 {
                self.give_answer(key);
            }
        }
    }

    /// Answers those that waited [`REQUEST_TIMEOUT_MS`] with what they have.
    pub(in crate::shard_core) fn expire_answers(&mut self, now: Millis) {
        while let Some(&(at, key, seq)) = self.answers.deadlines.front() {
            if at > now {
                break;
            }
            self.answers.deadlines.pop_front();
            if self.answers.waiting(key, seq) {
                self.give_answer(key);
            }
        }
    }

    /// Whether any push answer waits for plans or counts.
    pub(in crate::shard_core) fn has_pending_answers(&self) -> bool {
        !self.answers.pending.is_empty()
    }

    /// When the next answer times out, if any waits.
    pub(in crate::shard_core) fn answers_wakeup(&self) -> Option<Millis> {
        self.answers.deadlines.front().map(|&(at, ..)| at)
    }

    /// Writes the answer at `key` (partial if some part is not counted).
    fn give_answer(&mut self, key: u32) {
        if !self.answers.pending.contains(key as usize) {
            return;
        }
        let p = self.answers.pending.remove(key as usize);
        self.answers.trim();
        self.respond(p.caller, Response::json(p.shape.status(), &p.shape.body()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_may_overtake_its_plan() {
        let mut t = Tally::new(2);
        t.counts_due -= 1;
        t.online += 3;
        assert!(!t.done());
        t.plans_due -= 1;
        t.counts_due += 1;
        assert!(!t.done(), "one more user to plan");
        t.plans_due -= 1;
        assert!(t.done(), "the second user is offline");
        assert_eq!(t.answer(7), json!({ "id": 7, "online": 3 }));
    }

    #[test]
    fn a_batch_marks_its_uncounted_lines_partial() {
        let mut counted = Tally::new(1);
        counted.plans_due = 0;
        let shape = Shape::Batch {
            lines: vec![
                Line::Counted { id: 1, part: 0 },
                Line::Known { id: 2, online: 9 },
                Line::Refused("bad".into()),
                Line::Counted { id: 3, part: 1 },
                Line::Counted { id: 4, part: 1 },
            ],
            tallies: vec![counted, Tally::new(1)],
        };
        assert_eq!(shape.open(), 1);
        assert_eq!(
            shape.body(),
            json!({
                "results": [
                    { "id": 1, "online": 0 },
                    { "id": 2, "online": 9 },
                    { "error": "bad" },
                    { "id": 3, "online": 0, "partial": true },
                    { "id": 4, "online": 0, "partial": true },
                ],
                "partial": true,
            })
        );
    }
}
