//! Fuzzes the backend client's HTTP/1.1 response parser
//! (`gateway::backend::http_client::parse_response`): the whole input
//! with and without EOF, and the same bytes arriving in pieces with
//! complete responses taken off the front, EOF after the last piece.
//!
//! Input layout: byte 0 sets the piece size (bits 0-4, 1..=32, at least
//! 1/64 of the data so one run parses at most about 64 times) and the
//! body cap (bit 5: 64 bytes, else 1 MiB); the rest is the wire data.
#![no_main]

use gateway::backend::http_client::{Response, parse_response};
use libfuzzer_sys::fuzz_target;

/// Responses framed from `data` fed in `piece`-sized pieces; whether the
/// stream ended in an error.
fn frame_all(data: &[u8], piece: usize, max_body: usize) -> (Vec<Response>, bool) {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut fed = 0;
    loop {
        let eof = fed == data.len();
        match parse_response(&buf, eof, max_body) {
            Ok(Some((resp, used))) => {
                assert!(used > 0 && used <= buf.len());
                assert!(resp.body.len() <= max_body && resp.body.len() <= used);
                buf.drain(..used);
                out.push(resp);
                if eof && buf.is_empty() {
                    return (out, false);
                }
            }
            Ok(None) if eof => return (out, false),
            Ok(None) => {
                let end = (fed + piece).min(data.len());
                buf.extend_from_slice(&data[fed..end]);
                fed = end;
            }
            Err(_) => return (out, true),
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let piece = (usize::from(ctl & 31) + 1).max(data.len() / 64);
    let max_body = if ctl & 32 == 0 { 1 << 20 } else { 64 };
    // Any single call on the raw bytes, with or without EOF.
    for eof in [false, true] {
        if let Ok(Some((resp, used))) = parse_response(data, eof, max_body) {
            assert!(used <= data.len() && resp.body.len() <= max_body);
        }
    }
    let _ = frame_all(data, piece, max_body);
});
