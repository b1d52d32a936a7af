//! A writer thread for one store: it performs the core's ops with a
//! [`FileExecutor`], in the order submitted, and hands the completions
//! back, so the shard that owns the store never waits for a disk. After
//! each batch it calls `wake` (a shard's doorbell).

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::file_io::FileExecutor;
use super::ops::{OpDone, OpId, StoreOp};

/// The writer thread of one store and the channels to it.
#[derive(Debug)]
pub struct Writer {
    ops: Option<mpsc::Sender<Vec<StoreOp>>>,
    done: mpsc::Receiver<(OpId, OpDone)>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts a thread named `name` performing ops on the store in `dir`;
    /// `wake` is called after each batch's completions are sent.
    pub fn spawn(
        name: String,
        dir: PathBuf,
        wake: impl Fn() + Send + 'static,
    ) -> std::io::Result<Self> {
        let (ops_tx, ops_rx) = mpsc::channel::<Vec<StoreOp>>();
        let (done_tx, done_rx) = mpsc::channel();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            let mut exec = FileExecutor::new(dir);
            while let Ok(batch) = ops_rx.recv() {
                for op in batch {
                    if done_tx.send(exec.perform(op)).is_err() {
                        return;
                    }
                }
                wake();
            }
        })?;
        Ok(Self {
            ops: Some(ops_tx),
            done: done_rx,
            thread: Some(thread),
        })
    }

    /// Hands `ops` to the thread (nothing if empty); `false` if the thread
    /// is gone.
    pub fn submit(&self, ops: Vec<StoreOp>) -> bool {
        if ops.is_empty() {
            return true;
        }
        self.ops.as_ref().is_some_and(|tx| tx.send(ops).is_ok())
    }

    /// Moves the completions that arrived to `into`, in order.
    pub fn completions(&self, into: &mut Vec<(OpId, OpDone)>) {
        into.extend(self.done.try_iter());
    }

    /// Waits for the next completion (for a flush at shutdown).
    pub fn wait(&self) -> Option<(OpId, OpDone)> {
        self.done.recv().ok()
    }
}

impl Drop for Writer {
    /// Lets the thread finish what it was given, then joins it.
    fn drop(&mut self) {
        self.ops = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use protocol::time::Millis;

    use super::*;
    use crate::store::{NewPush, StoreEvent, StoreSettings, load_dir};
    use crate::time::Time;

    #[test]
    fn a_push_is_committed_through_the_writer_thread() {
        let dir = std::env::temp_dir().join(format!(
            "gateway-store-writer-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut core, _) = load_dir(&dir, StoreSettings::default()).unwrap();
        let wakes = Arc::new(AtomicUsize::new(0));
        let w = Arc::clone(&wakes);
        let writer = Writer::spawn("store-test".into(), dir.clone(), move || {
            w.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
        let now = Time {
            now: Millis(0),
            unix_ms: 1_700_000_000_000,
        };
        let push = NewPush {
            id: 1,
            user: "alice",
            ttl_ms: None,
            payload: b"hi",
        };
        let ticket = core.append(now, push).unwrap().ticket;
        let mut ops = Vec::new();
        core.take_ops(now, &mut ops);
        let count = ops.len();
        assert!(writer.submit(ops));
        for _ in 0..count {
            let (id, done) = writer.wait().unwrap();
            core.on_op_done(now, id, done);
        }
        let mut events = Vec::new();
        core.take_events(&mut events);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, StoreEvent::Committed { through } if *through >= ticket)),
            "{events:?}"
        );
        let mut rest = Vec::new();
        writer.completions(&mut rest);
        assert!(rest.is_empty());
        drop(writer);
        assert!(wakes.load(Ordering::Relaxed) >= 1);
        let (again, _) = load_dir(&dir, StoreSettings::default()).unwrap();
        assert_eq!(again.pending_count("alice"), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
