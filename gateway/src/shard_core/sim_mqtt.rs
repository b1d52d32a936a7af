//! An MQTT client in the simulation (`sim`): a client of the MQTT
//! listener writes packets made with `protocol::mqtt::encode` and keeps
//! what the gateway sent, decoded, as [`MqttSeen`].

use std::net::{IpAddr, Ipv4Addr};

use protocol::client::{ClientConfig, ClientSession};
use protocol::mqtt::encode::{encode_connect, encode_subscribe, encode_unsubscribe};
use protocol::mqtt::{Connect, Decoded, Packet, QoS, decode_packet};

use super::sim::{Sim, SimClient};

/// A packet the gateway sent to a simulated MQTT client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttSeen {
    /// CONNACK: session present, return code.
    ConnAck(bool, u8),
    /// SUBACK: the granted codes.
    SubAck(Vec<u8>),
    /// UNSUBACK.
    UnsubAck,
    /// PUBLISH: topic, payload, QoS, packet id (0 at QoS 0), DUP.
    Publish(String, String, u8, u16, bool),
    /// PINGRESP.
    PingResp,
}

/// The MQTT side of a simulated client: the gateway's bytes not decoded
/// yet, and what was decoded.
#[derive(Debug, Default)]
pub struct SimMqtt {
    pending: Vec<u8>,
    /// What the gateway sent, in order.
    pub seen: Vec<MqttSeen>,
}

impl SimMqtt {
    /// Bytes from the gateway.
    pub(super) fn take(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        let mut used = 0;
        while let Ok(Decoded::Packet { packet, len }) =
            decode_packet(&self.pending[used..], usize::MAX)
        {
            let seen = match packet {
                Packet::ConnAck(c) => MqttSeen::ConnAck(c.session_present, c.code as u8),
                Packet::SubAck(s) => MqttSeen::SubAck(s.codes().map(|c| c as u8).collect()),
                Packet::UnsubAck(_) => MqttSeen::UnsubAck,
                Packet::Publish(p) => MqttSeen::Publish(
                    p.topic.to_string(),
                    String::from_utf8_lossy(p.payload).into_owned(),
                    p.qos as u8,
                    p.packet_id,
                    p.dup,
                ),
                Packet::PingResp => MqttSeen::PingResp,
                other => panic!("the gateway sent a client {other:?}"),
            };
            self.seen.push(seen);
            used += len;
        }
        self.pending.drain(..used);
    }

    /// The PUBLISHes seen: (topic, payload).
    pub fn publishes(&self) -> Vec<(String, String)> {
        self.seen
            .iter()
            .filter_map(|s| match s {
                MqttSeen::Publish(t, p, ..) => Some((t.clone(), p.clone())),
                _ => None,
            })
            .collect()
    }
}

impl Sim {
    /// Connects an MQTT client of `user` to `shard`'s MQTT listener: its
    /// CONNECT (client id `client_id`, `clean` session or not, keep-alive
    /// `keep_alive_s`) goes in its first write.
    pub fn connect_mqtt(
        &mut self,
        shard: usize,
        user: &str,
        client_id: &str,
        clean: bool,
        keep_alive_s: u16,
    ) -> usize {
        let token = Self::token(user, None, None);
        let mut connect = Vec::new();
        let c = Connect {
            clean_session: clean,
            keep_alive: keep_alive_s,
            client_id,
            will: None,
            username: Some(""),
            password: Some(token.as_bytes()),
        };
        encode_connect(&c, &mut connect).expect("a CONNECT encodes");
        // The v1 session is unused: an MQTT client's bytes bypass it.
        let session = ClientSession::new(self.now, ClientConfig::default());
        let mut client = SimClient::new(shard, session, connect);
        client.mqtt = Some(SimMqtt::default());
        self.clients.push(client);
        let id = self.clients.len() - 1;
        let t = self.time();
        let peer = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        self.cores[shard].on_accepted(t, id as u32, super::ListenerKind::Mqtt, peer);
        self.run();
        id
    }

    /// MQTT client `client` subscribes to `filters` at QoS 1.
    pub fn mqtt_subscribe(&mut self, client: usize, packet_id: u16, filters: &[&str]) {
        let filters: Vec<(&str, QoS)> = filters.iter().map(|f| (*f, QoS::AtLeastOnce)).collect();
        let mut bytes = Vec::new();
        encode_subscribe(packet_id, &filters, &mut bytes).expect("a SUBSCRIBE encodes");
        self.clients[client].write(bytes);
        self.run();
    }

    /// MQTT client `client` unsubscribes from `filters`.
    pub fn mqtt_unsubscribe(&mut self, client: usize, packet_id: u16, filters: &[&str]) {
        let mut bytes = Vec::new();
        encode_unsubscribe(packet_id, filters, &mut bytes).expect("an UNSUBSCRIBE encodes");
        self.clients[client].write(bytes);
        self.run();
    }

    /// What MQTT client `client` was sent.
    pub fn mqtt_seen(&self, client: usize) -> &[MqttSeen] {
        self.clients[client]
            .mqtt
            .as_ref()
            .map_or(&[], |m| m.seen.as_slice())
    }
}
