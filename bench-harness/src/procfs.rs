//! Readers for the /proc figures the harness reports: a process's resident
//! memory and the kernel's slab memory.

/// A `key:   value kB` field of /proc/meminfo, in kB.
#[must_use]
pub fn meminfo_kb(key: &str) -> Option<u64> {
    field_kb(&std::fs::read_to_string("/proc/meminfo").ok()?, key)
}

/// `VmRSS` of process `pid`, in kB.
#[must_use]
pub fn rss_kb(pid: u32) -> Option<u64> {
    field_kb(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        "VmRSS",
    )
}

/// CPU time (user + system) of process `pid`, in clock ticks.
#[must_use]
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = stat.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace();
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second, the unit of [`cpu_ticks`].
#[must_use]
pub fn ticks_per_sec() -> u64 {
    // SAFETY: sysconf reads a constant of the system; no memory involved.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// The kB value of `key` in a /proc "key: value kB" text.
#[must_use]
pub fn field_kb(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.split_whitespace().next()?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields() {
        let t = "MemTotal:       24000000 kB\nSlab:             123456 kB\nVmRSS:\t  2048 kB\n";
        assert_eq!(field_kb(t, "Slab"), Some(123_456));
        assert_eq!(field_kb(t, "VmRSS"), Some(2048));
        assert_eq!(field_kb(t, "Missing"), None);
    }

    #[test]
    fn reads_this_process() {
        assert!(rss_kb(std::process::id()).is_some_and(|kb| kb > 0));
        assert!(meminfo_kb("Slab").is_some());
        assert!(cpu_ticks(std::process::id()).is_some());
        assert!(ticks_per_sec() >= 100);
    }
}
