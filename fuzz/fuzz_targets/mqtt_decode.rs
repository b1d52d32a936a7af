//! Fuzzes the MQTT 3.1.1 packet decoder.
//!
//! Input layout: byte 0 picks the `max_packet` bound (small or default);
//! the rest is a stream of bytes as a peer would send them. Every decoded
//! packet must re-encode to bytes that decode to the same packet, and must
//! decode the same from every prefix-plus-rest split (incremental feeding).
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::mqtt::{DEFAULT_MAX_PACKET, Decoded, decode_packet, encode_packet};

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let max_packet = if ctl & 1 == 0 { DEFAULT_MAX_PACKET } else { 64 };
    let mut rest = data;
    loop {
        let packet = match decode_packet(rest, max_packet) {
            Ok(Decoded::Packet { packet, len }) => {
                assert!(len >= 2 && len <= rest.len() && len <= max_packet);
                // A prefix never decodes, and never asks past the packet.
                for cut in [0, 1, len / 2, len - 1] {
                    match decode_packet(&rest[..cut], max_packet) {
                        Ok(Decoded::NeedMore(n)) => assert!(n >= 1 && cut + n <= len),
                        other => panic!("prefix {cut} of {len}: {other:?}"),
                    }
                }
                rest = &rest[len..];
                packet
            }
            Ok(Decoded::NeedMore(n)) => {
                assert!(n >= 1);
                break;
            }
            Err(e) => {
                assert!(!e.label().is_empty());
                break;
            }
        };
        let mut again = Vec::new();
        encode_packet(&packet, &mut again).expect("a decoded packet re-encodes");
        match decode_packet(&again, usize::MAX) {
            Ok(Decoded::Packet { packet: twice, len }) => {
                assert_eq!(len, again.len());
                assert_eq!(twice, packet);
            }
            other => panic!("re-encoded packet does not decode: {other:?}"),
        }
    }
});
