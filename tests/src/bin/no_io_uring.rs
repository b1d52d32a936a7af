//! `e2e-no-io-uring PROGRAM [ARGS...]`: runs PROGRAM with io_uring denied,
//! as a container's seccomp profile denies it (Docker >= 25, containerd):
//! a seccomp filter makes `io_uring_setup`, `io_uring_enter` and
//! `io_uring_register` fail with EPERM, for this process and what it
//! execs, and nothing else changes. No machine-wide setting is touched.

use std::os::unix::process::CommandExt;

/// Where the architecture and the syscall number sit in `seccomp_data`.
const ARCH_OFFSET: u32 = 4;
const NR_OFFSET: u32 = 0;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// io_uring_setup, io_uring_enter, io_uring_register: one numbering on
/// every architecture since Linux 5.1.
const IO_URING_SYSCALLS: [u32; 3] = [425, 426, 427];

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: BPF_JEQ_K,
        jt,
        jf,
        k,
    }
}

/// The filter: on this architecture, the three io_uring syscalls fail
/// with EPERM; everything else is allowed.
fn filter() -> Vec<libc::sock_filter> {
    let [setup, enter, register] = IO_URING_SYSCALLS;
    vec![
        stmt(BPF_LD_W_ABS, ARCH_OFFSET),
        // Another architecture's syscall numbers: allow (index 6).
        jump(AUDIT_ARCH, 0, 4),
        stmt(BPF_LD_W_ABS, NR_OFFSET),
        jump(setup, 3, 0),
        jump(enter, 2, 0),
        jump(register, 1, 0),
        stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
        stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::EPERM as u32),
    ]
}

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(program) = args.next() else {
        eprintln!("usage: e2e-no-io-uring PROGRAM [ARGS...]");
        std::process::exit(2);
    };
    let mut prog = filter();
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: prctl with the documented arguments; the filter outlives the
    // call (the kernel copies it).
    let installed = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const libc::sock_fprog,
            ) == 0
    };
    if !installed {
        eprintln!(
            "e2e-no-io-uring: cannot install the seccomp filter: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(2);
    }
    let err = std::process::Command::new(&program).args(args).exec();
    eprintln!(
        "e2e-no-io-uring: cannot run {}: {err}",
        program.to_string_lossy()
    );
    std::process::exit(2);
}
