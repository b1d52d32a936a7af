//! Cross-shard mailboxes, user directory, topic index and encode-once
//! broadcast payloads (built by the push-delivery issue).
