//! Cross-shard routing for the gateway: how one shard reaches clients held
//! by another without sharing per-connection state.
//!
//! - [`mailbox`]: one bounded lock-free inbox per shard that every shard
//!   sends into (memory linear in the shard count, FIFO per sender), with
//!   a doorbell protocol that wakes a parked shard exactly
//!   when it has mail (no lost wake-ups, no busy polling).
//! - [`directory`]: the user directory kept by each user's owner shard
//!   (`hash(user) mod shards`): which shards hold that user's sessions.
//! - [`topics`]: the topic → shard-set index kept by each topic's owner
//!   shard, and each shard's local topic → subscribers index.
//! - [`owner`]: the stable hash that picks owners.
//! - [`routes`]: the cache that lets the shard that accepted a push to a
//!   user skip the owner hop, keeping per-user order.
//! - [`messages`]: what shards send each other, and [`messages::Dest`],
//!   where a message goes (a shard of this node, or another node).
//! - [`router`]: the routing policy, as pure code: where pushes, requests
//!   and session changes go, and what an owner does with its messages.
//!
//! Payloads travel as [`bytes::Bytes`] encoded once; a receiving shard
//! copies them once into its own buffer so the per-recipient reference
//! counting never touches another core's cache line.

pub mod directory;
pub mod filters;
pub mod mailbox;
pub mod messages;
pub mod owner;
pub mod router;
pub mod routes;
pub mod topics;
