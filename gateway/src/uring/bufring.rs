//! The shard's receive buffer pool: one provided-buffer ring registered
//! with the shard's io_uring. The kernel picks a buffer only when data
//! arrives, so an idle connection holds no receive buffer.
//!
//! The kernel consumes a buffer ring first-in first-out, so a ring holding
//! every buffer would cycle through all of them and keep the whole pool
//! resident even when traffic is light. Only a window of the buffers is
//! therefore handed to the kernel: it doubles when the kernel runs dry
//! (a receive fails with ENOBUFS) and shrinks back when traffic calms down,
//! and buffers taken out of the window have their pages returned to the OS.
//!
//! Where the kernel allows it (Linux 6.12+), buffers are consumed
//! incrementally: a 10-byte ping takes 10 bytes of a buffer, not a whole
//! one, and the kernel keeps filling the same buffer until it is full. The
//! shard then tracks how far each buffer has been filled and recycles it
//! only once the kernel has moved past it.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;

/// Smallest window of buffers handed to the kernel.
pub const MIN_WINDOW: u32 = 32;

/// `IOU_PBUF_RING_INC`: consume buffers incrementally (Linux 6.12+).
const PBUF_RING_INC: u16 = 2;

/// Errors setting up the buffer ring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BufRingError {
    /// Count not a power of two in 1..=32768.
    #[error("buffer count {0} must be a power of two in 1..=32768")]
    BadCount(u32),
    /// The memory could not be mapped.
    #[error("cannot map {bytes} bytes for the buffer ring: {source}")]
    Map {
        /// Bytes requested.
        bytes: usize,
        /// The OS error.
        source: io::Error,
    },
    /// The kernel refused the registration (needs Linux 5.19+).
    #[error("cannot register the provided-buffer ring (needs Linux 5.19+): {0}")]
    Register(io::Error),
}

/// How many buffers the kernel should hold, from what the shard observed.
///
/// Pure bookkeeping, separate from the memory so it can be tested alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Buffers the kernel should hold.
    pub target: u32,
    /// Ceiling: the pool's size.
    pub max: u32,
    /// Most buffers in use at once since the last [`Window::review`].
    pub peak_in_use: u32,
}

impl Window {
    /// A window over a pool of `max` buffers, starting small.
    pub fn new(max: u32) -> Self {
        Self {
            target: MIN_WINDOW.min(max),
            max,
            peak_in_use: 0,
        }
    }

    /// The kernel ran dry: double the window.
    pub fn grow(&mut self) {
        self.target = (self.target * 2).min(self.max);
    }

    /// Shrinks the window towards twice the peak use seen since the last
    /// review (never below [`MIN_WINDOW`]) and starts a new period.
    pub fn review(&mut self) {
        let want = (self.peak_in_use * 2)
            .next_power_of_two()
            .max(MIN_WINDOW)
            .min(self.max);
        if want < self.target {
            self.target = want;
        }
        self.peak_in_use = 0;
    }
}

/// A provided-buffer ring and the buffers behind it, in one mapping.
///
/// Every buffer is in exactly one place: in the kernel's ring, taken by a
/// completion and being read by the shard, or resting (out of the window).
#[derive(Debug)]
pub struct BufRing {
    base: NonNull<u8>,
    map_len: usize,
    ring_bytes: usize,
    entries: u16,
    buf_size: u32,
    group: u16,
    /// Tail as published to the kernel plus not-yet-published recycles.
    local_tail: u16,
    /// Buffers in the kernel's ring (provided, not yet consumed).
    provided: u32,
    /// Buffers out of the window, pages returned to the OS.
    resting: Vec<u16>,
    window: Window,
    /// Whether the kernel consumes buffers incrementally.
    incremental: bool,
    /// Bytes of each buffer already handed out (incremental mode).
    filled: Box<[u32]>,
    /// Buffers the kernel has written since their pages were last
    /// released: resident memory.
    dirty: Box<[bool]>,
}

impl BufRing {
    /// Maps `count` buffers of `size` bytes and registers them as buffer
    /// group `group` on `ring`; a small window of them goes to the kernel.
    pub fn new(ring: &IoUring, group: u16, count: u32, size: u32) -> Result<Self, BufRingError> {
        if !count.is_power_of_two() || count > 32768 {
            return Err(BufRingError::BadCount(count));
        }
        let entries = count as usize;
        let ring_bytes = (entries * std::mem::size_of::<BufRingEntry>()).div_ceil(4096) * 4096;
        let map_len = ring_bytes + entries * size as usize;
        // SAFETY: anonymous private mapping, checked for failure below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(BufRingError::Map {
                bytes: map_len,
                source: io::Error::last_os_error(),
            });
        }
        let Some(base) = NonNull::new(ptr.cast::<u8>()) else {
            return Err(BufRingError::Map {
                bytes: map_len,
                source: io::Error::other("null mapping"),
            });
        };
        let window = Window::new(count);
        let mut this = Self {
            base,
            map_len,
            ring_bytes,
            entries: count as u16,
            buf_size: size,
            group,
            local_tail: 0,
            provided: 0,
            // Highest ids rest first, so the window starts at the low ones.
            resting: (window.target..count).rev().map(|b| b as u16).collect(),
            window,
            incremental: false,
            filled: vec![0; entries].into_boxed_slice(),
            dirty: vec![false; entries].into_boxed_slice(),
        };
        for bid in 0..this.window.target {
            this.push_entry(bid as u16);
        }
        this.commit();
        // SAFETY: the mapping lives as long as `self`; the shard drops its
        // ring before its buffer ring (field order), and the kernel pins the
        // ring pages while they are registered.
        let submitter = ring.submitter();
        let addr = base.as_ptr() as u64;
        // SAFETY: as above, for either registration.
        let incremental = unsafe {
            submitter.register_buf_ring_with_flags(addr, count as u16, group, PBUF_RING_INC)
        };
        match incremental {
            Ok(()) => this.incremental = true,
            // Kernels before 6.12 refuse the flag: whole buffers then.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                // SAFETY: as above.
                unsafe { submitter.register_buf_ring_with_flags(addr, count as u16, group, 0) }
                    .map_err(BufRingError::Register)?;
            }
            Err(e) => return Err(BufRingError::Register(e)),
        }
        Ok(this)
    }

    /// Buffer group id to put in recv SQEs.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Size of each buffer in bytes.
    pub fn buf_size(&self) -> u32 {
        self.buf_size
    }

    /// Buffers the kernel may fill right now.
    pub fn window(&self) -> u32 {
        self.window.target
    }

    /// Whether the kernel consumes buffers incrementally.
    pub fn is_incremental(&self) -> bool {
        self.incremental
    }

    fn buf_ptr(&self, bid: u16) -> *mut u8 {
        let offset = self.ring_bytes + (bid % self.entries) as usize * self.buf_size as usize;
        // SAFETY: the offset lies inside the mapping.
        unsafe { self.base.as_ptr().add(offset) }
    }

    /// The `len` bytes a completion delivered in buffer `bid`, and whether
    /// the kernel is done with that buffer (then the caller must
    /// [`recycle`](Self::recycle) it once it has read the bytes).
    /// `buf_more` is the completion's `IORING_CQE_F_BUF_MORE` flag: the
    /// kernel keeps filling a partly used buffer in incremental mode.
    pub fn take(&mut self, bid: u16, len: usize, buf_more: bool) -> (&[u8], bool) {
        let bid = bid % self.entries;
        let start = if self.incremental {
            self.filled[bid as usize] as usize
        } else {
            0
        };
        let start = start.min(self.buf_size as usize);
        let len = len.min(self.buf_size as usize - start);
        let done = !(self.incremental && buf_more);
        self.dirty[bid as usize] = true;
        if done {
            self.filled[bid as usize] = 0;
            self.provided = self.provided.saturating_sub(1);
            let in_use = self.window.target.saturating_sub(self.provided);
            self.window.peak_in_use = self.window.peak_in_use.max(in_use);
        } else {
            self.filled[bid as usize] = (start + len) as u32;
        }
        // SAFETY: start+len lies inside buffer `bid` of the mapping; the
        // kernel wrote these bytes before posting the completion and never
        // writes them again before the buffer is recycled.
        let data = unsafe { std::slice::from_raw_parts(self.buf_ptr(bid).add(start), len) };
        (data, done)
    }

    fn push_entry(&mut self, bid: u16) {
        let mask = self.entries - 1;
        let idx = (self.local_tail & mask) as usize;
        let addr = self.buf_ptr(bid) as u64;
        // SAFETY: idx < entries, and the ring area holds `entries` entries.
        let entry = unsafe { &mut *self.base.as_ptr().cast::<BufRingEntry>().add(idx) };
        entry.set_addr(addr);
        entry.set_len(self.buf_size);
        entry.set_bid(bid);
        self.local_tail = self.local_tail.wrapping_add(1);
        self.provided += 1;
    }

    /// Returns taken buffer `bid`: back to the kernel while the window has
    /// room, else to rest with its pages released.
    pub fn recycle(&mut self, bid: u16) {
        let bid = bid % self.entries;
        if self.provided < self.window.target {
            self.push_entry(bid);
        } else {
            self.release_pages(bid);
            self.resting.push(bid);
        }
    }

    /// Gives buffer `bid`'s pages back to the OS if the kernel wrote them.
    ///
    /// The caller makes sure nobody holds unread bytes in it: it is resting,
    /// or queued in the kernel's ring behind the buffer being filled.
    fn release_pages(&mut self, bid: u16) {
        if !std::mem::take(&mut self.dirty[bid as usize]) {
            return;
        }
        // SAFETY: the range is buffer `bid` inside the mapping; anonymous
        // private pages read back as zeros after this, which nobody reads
        // before the kernel writes them again.
        unsafe {
            libc::madvise(
                self.buf_ptr(bid).cast(),
                self.buf_size as usize,
                libc::MADV_DONTNEED,
            );
        }
    }

    /// The kernel ran dry: widen the window and hand it resting buffers.
    pub fn grow(&mut self) {
        self.window.grow();
        self.fill_window();
    }

    /// Periodic review: shrink the window to what recent traffic needed.
    ///
    /// Buffers beyond the new window come to rest as the kernel consumes
    /// them, which takes minutes when traffic is light (an idle connection
    /// sends a few bytes every 30 s). Their pages are released right away
    /// instead, so a connect storm does not leave its buffers resident.
    ///
    /// Call between [`take`](Self::take)s of every completion so far, while
    /// the kernel is not running the shard's receives: with
    /// `IORING_SETUP_DEFER_TASKRUN` it fills buffers only inside the shard's
    /// own `io_uring_enter`.
    pub fn review(&mut self) {
        let before = self.window.target;
        self.window.review();
        if self.window.target < before {
            self.release_queued_surplus();
        }
    }

    /// Releases the pages of the buffers queued in the kernel's ring past
    /// the window. The kernel fills the ring from its head, `provided`
    /// entries behind the tail, so these are at least a whole window away
    /// from the buffer it is filling.
    fn release_queued_surplus(&mut self) {
        let mask = self.entries - 1;
        let head = self.local_tail.wrapping_sub(self.provided as u16);
        for i in self.window.target..self.provided {
            let idx = (head.wrapping_add(i as u16) & mask) as usize;
            // SAFETY: idx < entries, and the ring area holds `entries` entries.
            let bid = unsafe { (*self.base.as_ptr().cast::<BufRingEntry>().add(idx)).bid() };
            self.release_pages(bid % self.entries);
        }
    }

    fn fill_window(&mut self) {
        while self.provided < self.window.target {
            let Some(bid) = self.resting.pop() else {
                break;
            };
            self.push_entry(bid);
        }
    }

    /// Publishes recycled buffers to the kernel.
    pub fn commit(&mut self) {
        // SAFETY: the tail field of entry 0 is the ring tail; it is a u16
        // the kernel reads concurrently, so it is stored atomically.
        unsafe {
            let tail =
                BufRingEntry::tail(self.base.as_ptr().cast::<BufRingEntry>()) as *const AtomicU16;
            (*tail).store(self.local_tail, Ordering::Release);
        }
    }
}

// SAFETY: the mapping is owned by this value alone; the shard builds it on
// its own thread and never shares it.
unsafe impl Send for BufRing {}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `new` with this length.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.map_len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_doubles_on_exhaustion_up_to_the_pool() {
        let mut w = Window::new(256);
        assert_eq!(w.target, MIN_WINDOW);
        w.grow();
        assert_eq!(w.target, 64);
        for _ in 0..10 {
            w.grow();
        }
        assert_eq!(w.target, 256);
    }

    #[test]
    fn window_shrinks_to_twice_the_recent_peak() {
        let mut w = Window::new(4096);
        w.target = 4096;
        w.peak_in_use = 100;
        w.review();
        assert_eq!(w.target, 256);
        assert_eq!(w.peak_in_use, 0, "a review starts a new period");
        w.review();
        assert_eq!(w.target, MIN_WINDOW, "no traffic: back to the minimum");
    }

    #[test]
    fn review_never_grows_the_window() {
        let mut w = Window::new(4096);
        w.peak_in_use = 1000;
        w.review();
        assert_eq!(w.target, MIN_WINDOW, "growth only comes from exhaustion");
    }

    #[test]
    fn small_pools_are_their_own_window() {
        let w = Window::new(8);
        assert_eq!(w.target, 8);
    }
}
