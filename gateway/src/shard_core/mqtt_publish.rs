//! Pushes as MQTT PUBLISH packets: the topic a push arrives on (its own,
//! or the gateway's `$gateway/...` for user pushes and broadcasts), and
//! the packets made once per push on a shard (QoS 0 bytes shared by every
//! recipient; a QoS 1 head and payload to which each recipient adds its
//! packet id). Delivery itself is `shard_core::mqtt`.

use bytes::Bytes;
use protocol::mqtt::broadcast;

/// The topic prefix of user pushes as MQTT clients receive them: a push to
/// user `alice` arrives on `$gateway/user/alice`. Topics starting with `$`
/// are the server's (§4.7.2): no client can publish there, and `#` does not
/// match them.
pub const USER_PREFIX: &str = "$gateway/user/";
/// The topic broadcasts (`{"to": {"all": true}}`) arrive on.
pub const BROADCAST_TOPIC: &str = "$gateway/all";
/// The device label MQTT sessions have in presence events and listings.
pub const MQTT_DEVICE: &str = "mqtt";

/// What a push that is not to a topic is sent to, for its MQTT topic name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Direct {
    /// A topic push (the topic is in the push itself).
    #[default]
    Topic,
    /// A broadcast.
    All,
    /// A push to this user.
    User(Box<str>),
}

/// One push (or run of pushes) as PUBLISH packets, made once per shard
/// the first time an MQTT recipient needs it.
#[derive(Debug)]
pub(super) enum Publish {
    /// QoS 0: the same bytes for every recipient.
    Qos0(Bytes),
    /// QoS 1 (a durable push): the shared head and payload; each recipient
    /// adds its own packet id.
    Qos1 {
        /// The packet without its id.
        publish: broadcast::Qos1Publish,
        /// The push's id, for the PUBACK.
        push_id: u64,
        /// A redelivery (DUP set).
        redelivery: bool,
    },
}

/// Decodes a push's v1 frames (as the API encoded them) into PUBLISH
/// packets for `direct`. Frames that are not pushes, and pushes whose
/// topic cannot be an MQTT topic name, are skipped (and counted by the
/// caller as not delivered).
pub(super) fn publishes(v1: &[u8], direct: &Direct, max_frame: u32) -> Vec<Publish> {
    use protocol::proto::frame::Kind;
    let mut out = Vec::new();
    let mut rest = v1;
    while let Ok(Some((frame, used))) = protocol::codec::decode_frame(rest, max_frame) {
        rest = rest.get(used..).unwrap_or_default();
        let Some(Kind::Push(push)) = frame.kind else {
            continue;
        };
        let topic = match direct {
            Direct::Topic => push.topic,
            Direct::All => BROADCAST_TOPIC.to_string(),
            Direct::User(user) => format!("{USER_PREFIX}{user}"),
        };
        // A v1 topic may be no MQTT topic name (empty, or with `+`/`#`).
        if protocol::mqtt::topic::check_topic_name(&topic).is_err() {
            continue;
        }
        let payload = push.payload;
        let publish = if push.ack {
            broadcast::Qos1Publish::new(&topic, payload).map(|publish| Publish::Qos1 {
                publish,
                push_id: push.id,
                redelivery: push.redelivery,
            })
        } else {
            broadcast::shared_publish_qos0(&topic, &payload).map(Publish::Qos0)
        };
        if let Ok(p) = publish {
            out.push(p);
        }
        if rest.is_empty() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push_frame(topic: &str, ack: bool, redelivery: bool) -> Vec<u8> {
        use protocol::proto::{Push, frame::Kind};
        let push = Push {
            id: 7,
            app: String::new(),
            topic: topic.into(),
            payload: Bytes::from_static(b"hi"),
            ack,
            ts_us: 1,
            redelivery,
        };
        let mut out = Vec::new();
        protocol::codec::encode_frame(&protocol::codec::frame(Kind::Push(push)), &mut out);
        out
    }

    #[test]
    fn pushes_become_publishes_on_the_topic_they_were_sent_to() {
        let mut run = push_frame("news", false, false);
        run.extend(push_frame("news/x", true, false));
        let p = publishes(&run, &Direct::Topic, 1 << 20);
        assert_eq!(p.len(), 2);
        assert!(matches!(
            p[1],
            Publish::Qos1 {
                push_id: 7,
                redelivery: false,
                ..
            }
        ));
        let Publish::Qos0(bytes) = &p[0] else {
            panic!("a plain push is QoS 0")
        };
        // PUBLISH QoS 0, remaining length 2 + 4 + 2, topic "news", "hi".
        assert_eq!(&bytes[..], b"\x30\x08\x00\x04newshi");
        // A topic that is no MQTT topic name is skipped.
        for bad in ["", "a/+", "#"] {
            assert!(publishes(&push_frame(bad, false, false), &Direct::Topic, 1 << 20).is_empty());
        }
        let p = publishes(
            &push_frame("", true, true),
            &Direct::User("al".into()),
            1 << 20,
        );
        let Publish::Qos1 {
            publish,
            push_id,
            redelivery,
        } = &p[0]
        else {
            panic!("a durable push is QoS 1")
        };
        assert_eq!((*push_id, *redelivery), (7, true));
        let mut bytes = Vec::new();
        publish.write(9, true, &mut bytes);
        let topic = b"$gateway/user/al";
        assert_eq!(bytes[0], 0x3a, "PUBLISH, DUP, QoS 1");
        assert_eq!(&bytes[4..4 + topic.len()], topic);
        assert_eq!(&bytes[4 + topic.len()..], b"\x00\x09hi");
        let all = publishes(&push_frame("", false, false), &Direct::All, 1 << 20);
        let Publish::Qos0(bytes) = &all[0] else {
            panic!()
        };
        assert!(bytes.windows(12).any(|w| w == BROADCAST_TOPIC.as_bytes()));
    }
}
