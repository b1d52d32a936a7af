//! Fuzzes the store's recovery parser (`gateway::store::Recovery`): the
//! bytes of one or two segment files, as a restart would find them.
//! Recovery must never panic; a torn tail it asks to cut must lie within
//! the file, and once cut, the same files must recover whole to the same
//! inboxes (a repair is final, never a loop).
//!
//! Input layout: byte 0 says how to split (odd: the rest is two segments,
//! halved; even: one segment); the rest is the file contents.
#![no_main]

use std::path::PathBuf;

use gateway::store::{Recovery, StoreSettings, Verdict};
use libfuzzer_sys::fuzz_target;

/// Recovers `files` (numbered from 1); the files as repaired and the
/// pending count, or `None` if recovery refused them.
fn recover(files: &[Vec<u8>]) -> Option<(Vec<Vec<u8>>, Vec<Verdict>, u64)> {
    let mut recovery = Recovery::new(StoreSettings::default());
    let mut repaired = Vec::new();
    let mut verdicts = Vec::new();
    for (i, bytes) in files.iter().enumerate() {
        let seq = i as u32 + 1;
        let verdict = recovery
            .feed(seq, &PathBuf::from(format!("{seq}.seg")), bytes)
            .ok()?;
        match verdict {
            Verdict::Whole => repaired.push(bytes.clone()),
            Verdict::Truncate { len } => {
                assert!(len as usize <= bytes.len(), "cut past the end");
                if len > 0 {
                    repaired.push(bytes[..len as usize].to_vec());
                }
            }
        }
        verdicts.push(verdict);
    }
    let (core, report) = recovery.finish();
    assert_eq!(core.stats().pushes, report.pushes);
    Some((repaired, verdicts, report.pushes))
}

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let files = if ctl % 2 == 1 {
        let (a, b) = data.split_at(data.len() / 2);
        vec![a.to_vec(), b.to_vec()]
    } else {
        vec![data.to_vec()]
    };
    let Some((repaired, _, pushes)) = recover(&files) else {
        return;
    };
    let (_, verdicts, again) = recover(&repaired).expect("repaired files recover");
    assert!(verdicts.iter().all(|v| *v == Verdict::Whole), "{verdicts:?}");
    assert_eq!(again, pushes);
});
