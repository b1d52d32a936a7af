//! The gateway's configuration model: what a TOML file (or `gateway-tune
//! config`) says, resolved per shard and validated.
//!
//! It lives here, not in the gateway, because the tuner derives it and the
//! gateway reads it: one model, one set of defaults, one validation.
//!
//! - `model.rs`: [`GatewayConfig`] and its sections with their defaults,
//!   TOML in and out, [`GatewayConfig::resolve_shards`];
//! - `validate.rs`: [`GatewayConfig::validate`], the HS256 secret rule
//!   ([`hs256_secret_problem`]) and [`parse_cidr`];
//! - `store.rs`: the `[store]` section ([`StoreConfig`]) and its checks;
//! - `mqtt.rs`: the `[mqtt]` section ([`MqttSection`]: topic prefixes to
//!   uplink routes) and its checks;
//! - `tls.rs`: the `[tls]` section ([`TlsConfig`]) and its checks;
//! - `error.rs`: [`ConfigError`].
//!
//! Everything is used through this module (`tuning::config::...`).

mod error;
mod model;
mod mqtt;
mod store;
mod tls;
mod validate;

pub use crate::listen::ListenConfig;
pub use error::ConfigError;
pub use model::{
    AdmissionConfig, AuthConfig, DriverChoice, GatewayConfig, LogConfig, ProtocolConfig,
    PushConfig, ResolvedShard, ShardConfig, ShardOverride, ShutdownConfig, SlowConsumerPolicy,
};
pub use mqtt::{MAX_MQTT_ROUTES, MqttRoute, MqttSection};
pub use store::{Durability, MAX_DELIVERIES, MAX_TTL_MS, OverflowPolicy, StoreConfig};
pub use tls::{TlsConfig, TlsVersion};
pub use validate::{MIN_HS256_SECRET_BYTES, hs256_secret_problem, parse_cidr};
