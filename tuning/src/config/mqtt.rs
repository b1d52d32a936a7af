//! The `[mqtt]` section: what the MQTT listeners (`[listen] mqtt`,
//! `mqtt_tls`) make of a client PUBLISH. It becomes an uplink whose route
//! is the topic name, unless a `[[mqtt.route]]` prefix matches the topic:
//! then the route is that entry's (the longest matching prefix wins). The
//! uplink's backend is then chosen by `[uplink]` as for any uplink.

use serde::{Deserialize, Serialize};

use super::error::ConfigError;

/// Most `[[mqtt.route]]` entries.
pub const MAX_MQTT_ROUTES: usize = 1024;

/// One topic prefix mapped to an uplink route (`[[mqtt.route]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttRoute {
    /// Topic names starting with this (`sensors/`) take `route`.
    pub prefix: String,
    /// The uplink route they take (`telemetry`).
    pub route: String,
}

/// The `[mqtt]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSection {
    /// Topic prefixes mapped to uplink routes; a topic no prefix matches is
    /// its own route.
    #[serde(rename = "route", skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<MqttRoute>,
}

impl MqttSection {
    /// The uplink route of a PUBLISH to `topic`: the route of the longest
    /// prefix that matches it, else the topic itself.
    pub fn route_for<'a>(&'a self, topic: &'a str) -> &'a str {
        self.routes
            .iter()
            .filter(|r| topic.starts_with(r.prefix.as_str()))
            .max_by_key(|r| r.prefix.len())
            .map_or(topic, |r| r.route.as_str())
    }

    /// Checks the entries; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.routes.len() > MAX_MQTT_ROUTES {
            return Err(ConfigError::invalid(
                "mqtt.route",
                format!("{} entries; at most {MAX_MQTT_ROUTES}", self.routes.len()),
            ));
        }
        for (i, r) in self.routes.iter().enumerate() {
            if r.prefix.is_empty() || r.route.is_empty() {
                return Err(ConfigError::invalid(
                    "mqtt.route",
                    format!("entry {i}: prefix and route must not be empty"),
                ));
            }
            if r.prefix.contains(['+', '#']) {
                return Err(ConfigError::invalid(
                    "mqtt.route",
                    format!(
                        "entry {i}: {:?} is a topic prefix, not a filter: no + or #",
                        r.prefix
                    ),
                ));
            }
            if self.routes[..i].iter().any(|o| o.prefix == r.prefix) {
                return Err(ConfigError::invalid(
                    "mqtt.route",
                    format!("entry {i}: prefix {:?} is given twice", r.prefix),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(entries: &[(&str, &str)]) -> MqttSection {
        MqttSection {
            routes: entries
                .iter()
                .map(|(p, r)| MqttRoute {
                    prefix: (*p).into(),
                    route: (*r).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_longest_matching_prefix_names_the_route_else_the_topic_does() {
        let s = section(&[("sensors/", "telemetry"), ("sensors/door/", "security")]);
        s.validate().unwrap();
        assert_eq!(s.route_for("sensors/t1"), "telemetry");
        assert_eq!(s.route_for("sensors/door/front"), "security");
        assert_eq!(s.route_for("chat/room1"), "chat/room1");
        assert_eq!(MqttSection::default().route_for("a/b"), "a/b");
    }

    #[test]
    fn bad_entries_are_refused_by_key() {
        for bad in [
            section(&[("", "r")]),
            section(&[("a/", "")]),
            section(&[("a/+/", "r")]),
            section(&[("a/", "r"), ("a/", "s")]),
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.starts_with("config: mqtt.route: "), "{bad:?}: {err}");
        }
    }
}
