//! Whether the kernel offers kTLS: the `tls` upper-layer protocol a TCP
//! socket can be switched to (`setsockopt(TCP_ULP, "tls")`), after which
//! the kernel encrypts and decrypts the records with keys user space hands
//! over. The gateway's TLS listeners encrypt in user space with rustls; this
//! is what the host check and the start-up log say about offloading them.
//! The gateway does not offload to kTLS (yet): it has never run on a kernel
//! with the `tls` ULP, so an offload could not be tested.

use crate::host::HostRoot;
use crate::report::{Finding, Severity};

/// The sysctl listing the upper-layer protocols registered with TCP.
pub const ULP_KEY: &str = "net.ipv4.tcp_available_ulp";

/// What the kernel offers for kTLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KtlsOffer {
    /// `tls` is registered (built in, or its module loaded).
    Offered,
    /// `tls` is not registered; the ULPs that are (may be empty).
    NotOffered(String),
    /// The list could not be read (no such sysctl, or an error): why.
    Unknown(String),
}

/// Reads [`ULP_KEY`] under `root`.
pub fn ktls_offer(root: &HostRoot) -> KtlsOffer {
    match root.read("/proc/sys/net/ipv4/tcp_available_ulp") {
        Ok(Some(list)) => {
            let list = list.trim();
            if list.split_whitespace().any(|ulp| ulp == "tls") {
                KtlsOffer::Offered
            } else {
                KtlsOffer::NotOffered(list.to_string())
            }
        }
        Ok(None) => KtlsOffer::Unknown(format!("{ULP_KEY} does not exist on this kernel")),
        Err(e) => KtlsOffer::Unknown(e.to_string()),
    }
}

/// The host check's line about kTLS: never a warning, since TLS in user
/// space works on every kernel; it says what offloading would need.
pub fn ktls_finding(offer: &KtlsOffer) -> Finding {
    let (current, why) = match offer {
        KtlsOffer::Offered => (
            "tls offered".to_string(),
            "the kernel offers kTLS; the gateway still encrypts TLS in user space (rustls): kTLS offload is not built",
        ),
        KtlsOffer::NotOffered(list) => (
            format!("no tls ({})", if list.is_empty() { "none" } else { list }),
            "no kTLS on this kernel (load the tls module for it); the gateway encrypts TLS in user space (rustls) either way",
        ),
        KtlsOffer::Unknown(why) => (
            format!("unreadable: {why}"),
            "whether the kernel offers kTLS is unknown; the gateway encrypts TLS in user space (rustls) either way",
        ),
    };
    Finding::new(ULP_KEY, current, "-", Severity::Ok, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeHost;

    #[test]
    fn tls_in_the_list_is_offered_and_anything_else_is_not() {
        let host = FakeHost::new();
        host.sysctl("net.ipv4.tcp_available_ulp", "espintcp mptcp tls\n");
        assert_eq!(ktls_offer(&host.root()), KtlsOffer::Offered);
        host.sysctl("net.ipv4.tcp_available_ulp", "mptcp\n");
        assert_eq!(
            ktls_offer(&host.root()),
            KtlsOffer::NotOffered("mptcp".into())
        );
        // A ULP whose name only contains "tls" is not kTLS.
        host.sysctl("net.ipv4.tcp_available_ulp", "notls\n");
        assert_eq!(
            ktls_offer(&host.root()),
            KtlsOffer::NotOffered("notls".into())
        );
        host.sysctl("net.ipv4.tcp_available_ulp", "\n");
        let f = ktls_finding(&ktls_offer(&host.root()));
        assert_eq!(f.current, "no tls (none)");
    }

    #[test]
    fn a_kernel_without_the_sysctl_is_unknown_and_never_a_warning() {
        let host = FakeHost::new();
        let offer = ktls_offer(&host.root());
        assert!(matches!(offer, KtlsOffer::Unknown(ref why) if why.contains("does not exist")));
        for offer in [
            offer,
            KtlsOffer::Offered,
            KtlsOffer::NotOffered("mptcp".into()),
        ] {
            let f = ktls_finding(&offer);
            assert_eq!(f.key, ULP_KEY);
            assert_eq!(f.severity, Severity::Ok);
        }
        assert!(ktls_finding(&KtlsOffer::Offered).why.contains("not built"));
    }
}
