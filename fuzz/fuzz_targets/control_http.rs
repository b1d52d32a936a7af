//! Fuzzes the control listener's HTTP/1.1 request parser
//! (`gateway::control::http::parse_request`) the way the server drives it:
//! the whole input at once, and the same bytes arriving in pieces, with
//! complete requests taken off the front as they frame.
//!
//! Input layout: byte 0 sets the piece size (1..=256, at least 1/64 of the
//! data so one run parses at most about 64 times); the rest is the wire
//! data. Both ways must frame the same requests and end the same way.
#![no_main]

use gateway::control::http::{FramingError, MAX_REQUEST, Request, parse_request};
use libfuzzer_sys::fuzz_target;

/// How a stream of bytes framed: the requests, then how it stopped
/// (`None`: waiting for more; `Some(status)`: refused).
fn frame_all(data: &[u8], piece: usize) -> (Vec<Request>, Option<u16>) {
    let mut requests = Vec::new();
    let mut buf = Vec::new();
    let mut fed = 0;
    loop {
        match parse_request(&buf) {
            Ok(Some((req, used))) => {
                assert!(used > 0 && used <= buf.len() && used <= MAX_REQUEST);
                assert!(req.body.len() < used);
                buf.drain(..used);
                requests.push(req);
            }
            Ok(None) => {
                if fed == data.len() {
                    return (requests, None);
                }
                let end = (fed + piece).min(data.len());
                buf.extend_from_slice(&data[fed..end]);
                fed = end;
            }
            Err(e) => return (requests, Some(status(&e))),
        }
    }
}

fn status(e: &FramingError) -> u16 {
    let s = e.status();
    assert!([400, 413, 414, 431].contains(&s), "{e}: {s}");
    s
}

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let piece = (usize::from(ctl) + 1).max(data.len() / 64);
    let whole = frame_all(data, data.len().max(1));
    let pieces = frame_all(data, piece);
    assert_eq!(whole, pieces, "piece size {piece}");
});
