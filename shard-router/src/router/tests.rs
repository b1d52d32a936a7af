//! N routers wired with FIFO mailboxes and a seeded scheduler that picks
//! which shard handles its next message: the order guarantees must hold
//! under every interleaving the mailboxes allow.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::{Outbox, Router};
use crate::directory::SessionRef;
use crate::messages::{Dest, Message, PushJob, Receipt, RequestRef, Target, UserAction};
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
        self.push_to_user_counted(via, user, id, None);
    }

    /// A push to `user` through `via`, its count going to `receipt`.
    fn push_to_user_counted(&mut self, via: usize, user: &str, id: u64, receipt: Option<Receipt>) {
        let mut out = Vec::new();
        self.routers[via].to_user(user, &job(id), receipt, &mut out);
        self.send(via, out);
    }

    /// The plans `shard` was handed for `receipt`.
    fn plans(&self, shard: usize, receipt: Receipt) -> Vec<u16> {
        self.handed[shard]
            .iter()
            .filter_map(|m| match m {
                Message::PushPlan(r, n) if *r == receipt => Some(*n),
                _ => None,
            })
            .collect()
    }

    /// The receipts of the deliveries `shard` was handed, in order.
    fn delivery_receipts(&self, shard: usize) -> Vec<Option<Receipt>> {
        self.handed[shard]
            .iter()
            .filter_map(|m| match m {
                Message::Deliver(_, _, r) => Some(*r),
                _ => None,
            })
            .collect()
    }

    /// Ids of the user pushes `shard` was handed to deliver.
    fn delivered(&self, shard: usize) -> Vec<u64> {
        self.handed[shard]
            .iter()
            .filter_map(|m| match m {
                Message::Deliver(Target::User(..), job, _) => Some(job.id),
                _ => None,
            })
            .collect()
    }
}

fn job(id: u64) -> Arc<PushJob> {
    Arc::new(PushJob {
        id,
        frame: Bytes::new(),
        frames: 1,
        app: "".into(),
        rate: 0,
        accepted_us: 0,
        ttl_ms: 0,
    })
}

/// A receipt for an answer waiting on `shard`.
fn receipt(shard: u16, part: u32) -> Receipt {
    Receipt {
        reply_to: RequestRef { shard, id: 3 },
        seq: 41,
        part,
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
    let mut out = Vec::new();
    net.routers[0].to_topic("news", &job(9), None, &mut out);
    net.send(0, out);
    net.settle();
    for shard in 0..4 {
        let topic_deliveries = net.handed[shard]
            .iter()
            .filter(|m| matches!(m, Message::Deliver(Target::Topic(t), ..) if &**t == "news"))
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

#[test]
fn a_user_push_through_the_owner_is_planned_there_and_each_delivery_carries_the_receipt() {
    for seed in 1..20u64 {
        let mut net = Net::new(4, seed);
        let via = 1;
        let user = user_owned_elsewhere(4, via, 3);
        net.session_up(0, &user, 1);
        net.session_up(3, &user, 2);
        net.session_up(3, &user, 3);
        net.settle();
        let r = receipt(via as u16, 0);
        net.push_to_user_counted(via, &user, 1, Some(r));
        net.settle();
        assert_eq!(net.plans(via, r), vec![2], "seed {seed}: two holders");
        assert_eq!(net.delivery_receipts(0), vec![Some(r)]);
        assert_eq!(net.delivery_receipts(3), vec![Some(r)]);
        assert_eq!(net.routers[via].cache_hits(), 0, "a route through 3 shards");
    }
}

#[test]
fn a_cached_route_is_planned_by_the_pushing_shard_itself() {
    let mut net = Net::new(4, 5);
    let via = 0;
    let user = (0..)
        .map(|i| format!("user-{i}"))
        .find(|u| owner_of(u, 4) != via)
        .unwrap_or_default();
    let holder = owner_of(&user, 4);
    net.session_up(holder, &user, 7);
    net.settle();
    // Pushes without a receipt are planned nowhere; they teach the route.
    net.push_to_user(via, &user, 1);
    net.settle();
    assert!(
        (0..4).all(|s| !net.handed[s]
            .iter()
            .any(|m| matches!(m, Message::PushPlan(..)))),
        "no receipt, no plan"
    );
    let r = receipt(via as u16, 2);
    let mut out = Vec::new();
    net.routers[via].to_user(&user, &job(2), Some(r), &mut out);
    assert_eq!(net.routers[via].cache_hits(), 1, "the route was cached");
    let plans: Vec<(Dest, u16)> = out
        .iter()
        .filter_map(|(d, m)| match m {
            Message::PushPlan(got, n) if *got == r => Some((*d, *n)),
            _ => None,
        })
        .collect();
    assert_eq!(
        plans,
        vec![(Dest::Local(via as u16), 1)],
        "planned at once, to itself"
    );
    assert!(
        !out.iter()
            .any(|(_, m)| matches!(m, Message::PushToUser(..))),
        "no hop through the owner"
    );
    let counts: Vec<u32> = out
        .iter()
        .filter_map(|(_, m)| match m {
            Message::PushCount(got, n) if *got == r => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(
        counts,
        vec![1],
        "a push for every app is counted from the route"
    );
    net.send(via, out);
    net.settle();
    assert_eq!(net.plans(via, r), vec![1]);
    assert_eq!(
        net.delivery_receipts(holder),
        vec![None, None],
        "the holder counts nothing"
    );
    // With an app filter the holders count.
    let filtered = Arc::new(PushJob {
        id: 3,
        frame: Bytes::new(),
        frames: 1,
        app: "chat".into(),
        rate: 0,
        accepted_us: 0,
        ttl_ms: 0,
    });
    let r = receipt(via as u16, 3);
    let mut out = Vec::new();
    net.routers[via].to_user(&user, &filtered, Some(r), &mut out);
    assert!(
        !out.iter().any(|(_, m)| matches!(m, Message::PushCount(..))),
        "not counted from the route"
    );
    net.send(via, out);
    net.settle();
    assert_eq!(net.plans(via, r), vec![1]);
    assert_eq!(net.delivery_receipts(holder), vec![None, None, Some(r)]);
}

#[test]
fn an_offline_user_is_planned_with_no_holders_wherever_it_is_owned() {
    let mut net = Net::new(3, 9);
    for (i, user) in ["nobody-a", "nobody-b", "nobody-c", "nobody-d"]
        .iter()
        .enumerate()
    {
        for via in 0..3 {
            let r = receipt(via as u16, i as u32);
            net.push_to_user_counted(via, user, 1, Some(r));
            net.settle();
            assert_eq!(net.plans(via, r), vec![0], "{user} via {via}");
        }
    }
    assert!((0..3).all(|s| net.delivery_receipts(s).is_empty()));
}

#[test]
fn a_topic_push_is_planned_by_the_topic_owner_and_a_broadcast_carries_no_receipt() {
    let mut net = Net::new(4, 13);
    let owner = owner_of("news", 4);
    for shard in [0u16, 2] {
        net.send(
            usize::from(shard),
            vec![(
                Dest::Local(owner as u16),
                Message::TopicJoin("news".into(), shard),
            )],
        );
    }
    net.settle();
    let (news, empty) = (receipt(3, 0), receipt(3, 1));
    let mut out = Vec::new();
    net.routers[3].to_topic("news", &job(1), Some(news), &mut out);
    net.routers[3].to_topic("nobody-reads-this", &job(2), Some(empty), &mut out);
    net.routers[3].to_all(&job(3), &mut out);
    net.send(3, out);
    net.settle();
    assert_eq!(net.plans(3, news), vec![2], "two shards with subscribers");
    assert_eq!(net.plans(3, empty), vec![0], "nobody subscribed");
    for shard in 0..4 {
        // The broadcast goes straight, the topic push through its owner:
        // either may arrive first.
        let mut got = net.delivery_receipts(shard);
        got.sort_by_key(Option::is_none);
        let want = if shard == 0 || shard == 2 {
            vec![Some(news), None]
        } else {
            vec![None]
        };
        assert_eq!(got, want, "shard {shard}");
    }
}
