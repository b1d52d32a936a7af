//! Tests of the io_uring verdict and the live probe.
use super::*;

fn ready_without(op: u8) -> RingProbe {
    RingProbe::Ready {
        opcodes: Some((0..=u8::MAX).filter(|&o| o != op).collect()),
        buf_ring: Ok(()),
        sparse_files: Ok(()),
    }
}

#[test]
fn kernel_versions_parse() {
    assert_eq!(
        KernelVersion::parse("6.8.0-45-generic"),
        Some(KernelVersion {
            major: 6,
            minor: 8,
            patch: 0
        })
    );
    assert_eq!(
        KernelVersion::parse("6.18.44-fc-v782").unwrap().to_string(),
        "6.18.44"
    );
    assert_eq!(
        KernelVersion::parse("5.19"),
        Some(KernelVersion::new(5, 19))
    );
    assert_eq!(
        KernelVersion::parse("6.1.0+"),
        Some(KernelVersion::new(6, 1))
    );
    assert_eq!(KernelVersion::parse("garbage"), None);
}

#[test]
fn everything_present_on_a_new_kernel() {
    let u = evaluate(
        Some(KernelVersion::new(6, 12)),
        Some(0),
        RingProbe::all_supported(),
    );
    assert!(u.missing_required().is_empty());
    assert!(u.has(Feature::BufRingInc));
    assert!(u.findings().iter().all(|f| f.severity == Severity::Ok));
    assert_eq!(u.findings().len(), 3 + Feature::ALL.len());
}

#[test]
fn old_kernel_blocks_multishot_recv() {
    let u = evaluate(
        Some(KernelVersion::new(5, 15)),
        Some(0),
        RingProbe::all_supported(),
    );
    let missing = u.missing_required();
    assert!(missing.contains(&Feature::RecvMulti) && missing.contains(&Feature::AcceptMulti));
    assert!(!missing.contains(&Feature::Send));
    let f = u.findings();
    assert_eq!(f[0].severity, Severity::Block);
    let recv = f
        .iter()
        .find(|f| f.key == "io_uring.op.recv-multishot")
        .unwrap();
    assert!(recv.why.contains("older than 6.0.0"), "{}", recv.why);
}

#[test]
fn seccomp_block_is_named() {
    let u = evaluate(
        Some(KernelVersion::new(6, 8)),
        Some(0),
        RingProbe::SetupFailed { errno: libc::EPERM },
    );
    assert_eq!(u.missing_required().len(), Feature::ALL.len() - 1);
    let setup = u
        .findings()
        .into_iter()
        .find(|f| f.key == "io_uring.setup")
        .unwrap();
    assert_eq!(setup.severity, Severity::Block);
    assert!(setup.why.contains("seccomp"), "{}", setup.why);
    let nosys = setup_error_hint(libc::ENOSYS, None);
    assert!(nosys.contains("seccomp") && nosys.contains("CONFIG_IO_URING"));
}

#[test]
fn disabled_sysctl_blocks() {
    let u = evaluate(
        Some(KernelVersion::new(6, 8)),
        Some(2),
        RingProbe::SetupFailed { errno: libc::EPERM },
    );
    let f = u.findings();
    assert_eq!(f[1].key, "kernel.io_uring_disabled");
    assert_eq!(f[1].severity, Severity::Block);
    let u = evaluate(
        Some(KernelVersion::new(6, 8)),
        Some(1),
        RingProbe::all_supported(),
    );
    assert_eq!(u.findings()[1].severity, Severity::Warn);
}

#[test]
fn missing_opcodes_and_registrations() {
    let u = evaluate(
        Some(KernelVersion::new(6, 8)),
        Some(0),
        ready_without(opcode::Connect::CODE),
    );
    assert_eq!(u.missing_required(), vec![Feature::Connect]);
    // Incremental buffers came with 6.12: older kernels only warn.
    let u = evaluate(
        Some(KernelVersion::new(6, 8)),
        Some(0),
        RingProbe::all_supported(),
    );
    assert!(u.missing_required().is_empty());
    let inc = u
        .findings()
        .into_iter()
        .find(|f| f.key == "io_uring.op.buf-ring-inc")
        .unwrap();
    assert_eq!(inc.severity, Severity::Warn);
    assert!(inc.why.contains("older than 6.12"), "{}", inc.why);
    let u = evaluate(
        Some(KernelVersion::new(6, 8)),
        Some(0),
        RingProbe::Ready {
            opcodes: Some((0..=u8::MAX).collect()),
            buf_ring: Err(libc::EINVAL),
            sparse_files: Err(libc::EMFILE),
        },
    );
    let missing = u.missing_required();
    for f in [
        Feature::BufRing,
        Feature::RecvMulti,
        Feature::SparseFiles,
        Feature::AcceptMulti,
    ] {
        assert!(missing.contains(&f), "{f:?}");
    }
    let u = evaluate(
        None,
        None,
        RingProbe::Ready {
            opcodes: None,
            buf_ring: Ok(()),
            sparse_files: Ok(()),
        },
    );
    assert!(u.missing_required().contains(&Feature::Send));
}

#[test]
fn live_probe_on_this_host() {
    // The sandbox runs a 6.x kernel with io_uring enabled (DESIGN.md §6);
    // elsewhere a refused ring is a legitimate outcome.
    match probe_live() {
        RingProbe::Ready {
            opcodes,
            buf_ring,
            sparse_files,
        } => {
            let ops = opcodes.unwrap();
            assert!(ops.contains(&opcode::Send::CODE));
            assert!(buf_ring.is_ok() && sparse_files.is_ok());
        }
        RingProbe::SetupFailed { errno } => assert!(errno > 0),
    }
}
