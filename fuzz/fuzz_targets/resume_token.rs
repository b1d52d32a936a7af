//! Fuzzes the resume-token check (`gateway::resume_token::open`): a
//! client's `Hello.resume` is untrusted bytes. Whatever they are, opening
//! never panics, and only a token this key sealed for this user opens, to
//! the session it was sealed for.
//!
//! Input layout: byte 0 splits the rest into the user (its first
//! `byte 0 % 33` bytes, lossily UTF-8) and the token bytes.
#![no_main]

use gateway::resume_token::{ResumeKey, SessionName, open, seal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let split = usize::from(ctl % 33).min(data.len());
    let (user, token) = data.split_at(split);
    let user = String::from_utf8_lossy(user);
    let key = ResumeKey::from_bytes(b"fuzz key");
    // Arbitrary bytes: refused or, if by chance well formed and signed,
    // opened; never a panic.
    let _ = open(&key, token, &user);
    // A token sealed from fields taken from the input opens to exactly
    // those fields for its user, and for no other.
    if token.len() >= 10 {
        let name = SessionName {
            shard: u16::from_be_bytes([token[0], token[1]]),
            key: u32::from_be_bytes([token[2], token[3], token[4], token[5]]),
            generation: u32::from_be_bytes([token[6], token[7], token[8], token[9]]),
        };
        let sealed = seal(&key, name, &user);
        assert_eq!(open(&key, &sealed, &user), Ok(name));
        let other = format!("{user}x");
        assert!(open(&key, &sealed, &other).is_err());
    }
});
