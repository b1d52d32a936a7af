//! N routers wired with FIFO mailboxes and a seeded scheduler that picks
//! which shard handles its next message: the order guarantees must hold
//! under every interleaving the mailboxes allow.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::{Outbox, Router};
use crate::directory::SessionRef;
use crate::messages::{Dest, Message, PushJob, RequestRef, Target, UserAction};
use crate::owner::owner_of;

/// Routers of one node and their mailboxes: each inbox is FIFO per
/// sender, as `crate::mailbox` is.
struct Net {
    routers: Vec<Router>,
    /// inboxes[to][from]: messages from `from` waiting at `to`.
    inboxes: Vec<Vec<VecDeque<Message>>>,
    /// Holder-side messages each shard was handed, in order.
    handed: Vec<Vec<Message>>,
    rng: u64,
}

impl Net {
    fn new(shards: usize, seed: u64) -> Net {
        Net {
            routers: (0..shards).map(|i| Router::new(i, shards, 1024)).collect(),
            inboxes: (0..shards)
                .map(|_| (0..shards).map(|_| VecDeque::new()).collect())
                .collect(),
            handed: (0..shards).map(|_| Vec::new()).collect(),
            rng: seed | 1,
        }
    }

    fn next_rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Sends what `from` routed: to itself at once, else into the inbox.
    fn send(&mut self, from: usize, out: Outbox) {
        for (dest, msg) in out {
            let Dest::Local(to) = dest else {
                panic!("a single node never routes to another node");
            };
            let to = usize::from(to);
            if to == from {
                self.handle(to, msg);
            } else {
                self.inboxes[to][from].push_back(msg);
            }
        }
    }

    fn handle(&mut self, shard: usize, msg: Message) {
        let mut out = Vec::new();
        if let Some(held) = self.routers[shard].handle(msg, &mut out) {
            self.handed[shard].push(held);
        }
        self.send(shard, out);
    }

    /// Handles one waiting message, chosen at random; false when none waits.
    fn step(&mut self) -> bool {
        let waiting: Vec<(usize, usize)> = (0..self.inboxes.len())
            .flat_map(|to| (0..self.inboxes.len()).map(move |from| (to, from)))
            .filter(|&(to, from)| !self.inboxes[to][from].is_empty())
            .collect();
        if waiting.is_empty() {
            return false;
        }
        let (to, from) = waiting[(self.next_rand() % waiting.len() as u64) as usize];
        if let Some(msg) = self.inboxes[to][from].pop_front() {
            self.handle(to, msg);
        }
        true
    }

    /// Handles some waiting messages (up to `n`), at random.
    fn steps(&mut self, n: usize) {
        for _ in 0..n {
            if !self.step() {
                return;
            }
        }
    }

    fn settle(&mut self) {
        while self.step() {}
    }

    fn session_up(&mut self, holder: usize, user: &str, key: u32) {
        self.session_change(holder, user, key, Message::SessionUp);
    }

    fn session_down(&mut self, holder: usize, user: &str, key: u32) {
        self.session_change(holder, user, key, Message::SessionDown);
    }

    /// Tells `user`'s owner, from `holder`, that session `key` came or went.
    fn session_change(
        &mut self,
        holder: usize,
        user: &str,
        key: u32,
        change: fn(Box<str>, SessionRef) -> Message,
    ) {
        let r = SessionRef {
            shard: holder as u16,
            key,
            generation: 0,
        };
        let owner = owner_of(user, self.routers.len());
        self.send(
            holder,
            vec![(Dest::Local(owner as u16), change(user.into(), r))],
        );
    }

    fn push_to_user(&mut self, via: usize, user: &str, id: u64) {
        let job = Arc::new(PushJob {
            id,
            frame: Bytes::new(),
            frames: 1,
            app: "".into(),
            rate: 0,
            accepted_us: 0,
        });
        let mut out = Vec::new();
        self.routers[via].to_user(user, &job, &mut out);
        self.send(via, out);
    }

    /// Ids of the user pushes `shard` was handed to deliver.
    fn delivered(&self, shard: usize) -> Vec<u64> {
        self.handed[shard]
            .iter()
            .filter_map(|m| match m {
                Message::Deliver(Target::User(..), job) => Some(job.id),
                _ => None,
            })
            .collect()
    }
}

/// A user whose owner is neither `a` nor `b` of `shards`.
fn user_owned_elsewhere(shards: usize, a: usize, b: usize) -> String {
    (0..)
        .map(|i| format!("user-{i}"))
        .find(|u| {
            let o = owner_of(u, shards);
            o != a && o != b
        })
        .unwrap_or_default()
}

#[test]
fn pushes_to_a_user_arrive_in_order_under_any_interleaving_and_use_the_cache() {
    for seed in 1..200u64 {
        let mut net = Net::new(4, seed);
        // Only routes through two shards are cached (`routes::cacheable`):
        // the user is held on its owner, pushed to from another shard.
        let via = 0;
        let user = (0..)
            .map(|i| format!("user-{i}"))
            .find(|u| owner_of(u, 4) != via)
            .unwrap_or_default();
        let holder = owner_of(&user, 4);
        net.session_up(holder, &user, 7);
        net.settle();
        for id in 1..=50 {
            net.push_to_user(via, &user, id);
            // Let the network run a little between pushes: some go through
            // the owner, some straight once the route is learnt (an answer
            // is learnt only if no push went through the owner after its
            // question, so the network must sometimes catch up).
            let n = (net.next_rand() % 6) as usize;
            net.steps(n);
        }
        net.settle();
        let got = net.delivered(holder);
        assert_eq!(got, (1..=50).collect::<Vec<_>>(), "seed {seed}");
        assert!(
            net.routers[via].cache_hits() > 0,
            "seed {seed}: the cache was used"
        );
    }
}

#[test]
fn a_route_through_three_shards_is_not_cached_and_stays_in_order() {
    let mut net = Net::new(4, 3);
    let (via, holder) = (0, 3);
    let user = user_owned_elsewhere(4, via, holder);
    net.session_up(holder, &user, 7);
    net.settle();
    for id in 1..=20 {
        net.push_to_user(via, &user, id);
        net.steps(2);
    }
    net.settle();
    assert_eq!(net.delivered(holder), (1..=20).collect::<Vec<_>>());
    assert_eq!(net.routers[via].cache_hits(), 0);
}

#[test]
fn a_moved_user_is_reached_at_its_new_shard_and_nothing_is_lost_or_doubled() {
    for seed in 1..100u64 {
        let mut net = Net::new(4, seed);
        let via = 0;
        let user = user_owned_elsewhere(4, via, 1);
        net.session_up(1, &user, 1);
        net.settle();
        for id in 1..=10 {
            net.push_to_user(via, &user, id);
        }
        net.settle();
        // The user moves from shard 1 to shard 2.
        net.session_down(1, &user, 1);
        net.session_up(2, &user, 2);
        net.settle();
        for id in 11..=20 {
            net.push_to_user(via, &user, id);
            let n = (net.next_rand() % 3) as usize;
            net.steps(n);
        }
        net.settle();
        assert_eq!(
            net.delivered(1),
            (1..=10).collect::<Vec<_>>(),
            "seed {seed}"
        );
        assert_eq!(
            net.delivered(2),
            (11..=20).collect::<Vec<_>>(),
            "seed {seed}"
        );
    }
}

#[test]
fn a_topic_push_visits_only_shards_with_subscribers() {
    let mut net = Net::new(4, 7);
    let owner = owner_of("news", 4);
    for shard in [1u16, 3] {
        net.send(
            usize::from(shard),
            vec![(
                Dest::Local(owner as u16),
                Message::TopicJoin("news".into(), shard),
            )],
        );
    }
    net.settle();
    let job = Arc::new(PushJob {
        id: 9,
        frame: Bytes::new(),
        frames: 1,
        app: "".into(),
        rate: 0,
        accepted_us: 0,
    });
    let mut out = Vec::new();
    net.routers[0].to_topic("news", &job, &mut out);
    net.send(0, out);
    net.settle();
    for shard in 0..4 {
        let topic_deliveries = net.handed[shard]
            .iter()
            .filter(|m| matches!(m, Message::Deliver(Target::Topic(t), _) if &**t == "news"))
            .count();
        let want = usize::from(shard == 1 || shard == 3);
        assert_eq!(topic_deliveries, want, "shard {shard}");
    }
}

#[test]
fn a_user_request_is_planned_with_one_answer_per_holding_shard() {
    let mut net = Net::new(3, 11);
    net.session_up(0, "zoe", 1);
    net.session_up(2, "zoe", 2);
    net.session_up(2, "zoe", 3);
    net.settle();
    let reply_to = RequestRef { shard: 1, id: 5 };
    let mut out = Vec::new();
    net.routers[1].user_request("zoe", UserAction::Describe, reply_to, &mut out);
    net.send(1, out);
    net.settle();
    let plans: Vec<u16> = net.handed[1]
        .iter()
        .filter_map(|m| match m {
            Message::RequestPlan(r, n) if *r == reply_to => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(plans, vec![2], "two holding shards will answer");
    let asked = |shard: usize| {
        net.handed[shard]
            .iter()
            .filter_map(|m| match m {
                Message::SessionsRequest(_, sessions, ..) => Some(sessions.len()),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(asked(0), vec![1]);
    assert_eq!(asked(2), vec![2]);
}
