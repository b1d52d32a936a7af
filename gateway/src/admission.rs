//! Admission control at accept time: address allow/deny lists and the
//! per-IP connection cap. Shard-local: each shard counts its own
//! connections per address.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use tuning::config::{AdmissionConfig, parse_cidr};

/// Why a connection was refused before any byte was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The address is denied, or not in a non-empty allow list.
    Address,
    /// The address already holds its cap of connections on this shard.
    PerIp,
}

/// The admission rules of one shard and its per-address counts.
#[derive(Debug, Default)]
pub struct Admission {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    per_ip_cap: u32,
    per_ip: HashMap<IpAddr, u32>,
    /// Address of each admitted connection (by slab key), kept only while
    /// a per-IP cap is on so closing can release its count.
    holders: HashMap<u32, IpAddr>,
}

impl Admission {
    /// Rules from config; CIDRs were validated with the config, and any
    /// that still fail to parse are skipped.
    pub fn new(cfg: &AdmissionConfig) -> Self {
        let parse = |list: &[String]| list.iter().filter_map(|c| parse_cidr(c).ok()).collect();
        Self {
            allow: parse(&cfg.allow),
            deny: parse(&cfg.deny),
            per_ip_cap: cfg.max_connections_per_ip,
            per_ip: HashMap::new(),
            holders: HashMap::new(),
        }
    }

    /// Whether admission needs each peer's address (if not, the shard can
    /// use multishot accept, which does not report addresses).
    pub fn needs_peer_address(&self) -> bool {
        !self.allow.is_empty() || !self.deny.is_empty() || self.per_ip_cap > 0
    }

    /// Admits `ip` (counting it) or says why not.
    pub fn admit(&mut self, ip: IpAddr) -> Result<(), Refusal> {
        let ip = canonical(ip);
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return Err(Refusal::Address);
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(&ip)) {
            return Err(Refusal::Address);
        }
        if self.per_ip_cap > 0 {
            let n = self.per_ip.entry(ip).or_insert(0);
            if *n >= self.per_ip_cap {
                return Err(Refusal::PerIp);
            }
            *n += 1;
        }
        Ok(())
    }

    /// Remembers that connection `key` was admitted from `ip`.
    pub fn bind(&mut self, key: u32, ip: IpAddr) {
        if self.per_ip_cap > 0 {
            self.holders.insert(key, canonical(ip));
        }
    }

    /// Forgets connection `key`, releasing its address's count.
    pub fn release(&mut self, key: u32) {
        let Some(ip) = self.holders.remove(&key) else {
            return;
        };
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses count as their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(allow: &[&str], deny: &[&str], cap: u32) -> AdmissionConfig {
        AdmissionConfig {
            max_connections_per_ip: cap,
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn open_by_default_and_needs_no_address() {
        let mut a = Admission::new(&AdmissionConfig::default());
        assert!(!a.needs_peer_address());
        assert_eq!(a.admit("10.1.2.3".parse().unwrap()), Ok(()));
    }

    #[test]
    fn deny_wins_over_allow() {
        let mut a = Admission::new(&cfg(&["127.0.0.0/8"], &["127.0.0.9"], 0));
        assert!(a.needs_peer_address());
        assert_eq!(a.admit("127.0.0.1".parse().unwrap()), Ok(()));
        assert_eq!(a.admit("127.0.0.9".parse().unwrap()), Err(Refusal::Address));
        assert_eq!(a.admit("10.0.0.1".parse().unwrap()), Err(Refusal::Address));
    }

    #[test]
    fn per_ip_cap_counts_and_releases() {
        let mut a = Admission::new(&cfg(&[], &[], 2));
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(a.admit(ip), Ok(()));
        a.bind(1, ip);
        assert_eq!(a.admit(ip), Ok(()));
        a.bind(2, ip);
        assert_eq!(a.admit(ip), Err(Refusal::PerIp));
        assert_eq!(a.admit("127.0.0.3".parse().unwrap()), Ok(()));
        a.release(1);
        a.release(1);
        assert_eq!(a.admit(ip), Ok(()), "one release frees one slot");
        assert_eq!(a.admit(ip), Err(Refusal::PerIp));
    }

    #[test]
    fn mapped_v6_counts_as_v4() {
        let mut a = Admission::new(&cfg(&[], &["127.0.0.1"], 0));
        assert_eq!(
            a.admit("::ffff:127.0.0.1".parse().unwrap()),
            Err(Refusal::Address)
        );
    }
}
