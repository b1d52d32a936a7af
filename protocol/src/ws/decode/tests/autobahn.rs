//! The case groups of Autobahn|Testsuite's fuzzing client, replayed on the
//! decoder: framing (1.x), pings and pongs (2.x), reserved bits (3.x),
//! opcodes (4.x), fragmentation (5.x), UTF-8 of close reasons (6.x as far
//! as the mapping has text: close reasons only), close handling (7.x) and
//! limits (9.x). Case numbers are Autobahn's, where one matches.
//!
//! Where Autobahn echoes a text message, the v1 mapping closes with 1003
//! instead; where it echoes binary, the message here is checked to come
//! out of the decoder whole (the echo is the gateway's business, not the
//! codec's). Every case is fed whole and a byte at a time (`outcome`).

use super::*;

/// A binary payload of `len` bytes that is not all one value.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

/// `1.2.x`: binary messages of every length encoding's boundaries.
#[test]
fn framing_binary_lengths() {
    for len in [0, 125, 126, 127, 128, 65535, 65536] {
        let o = outcome(&bin(&payload(len)), MAX);
        assert_eq!(o.messages, [payload(len)], "length {len}");
        assert!(o.sent.is_empty() && o.end.is_none());
    }
    // 1.2.8: 64 KiB in chunks of 997 bytes.
    let (o, _) = feed(&bin(&payload(65536)), MAX, 997);
    assert_eq!(o.messages, [payload(65536)]);
}

/// `1.1.x`: text messages are not in the mapping.
#[test]
fn framing_text_is_unsupported_data() {
    for len in [0, 125, 65535] {
        let o = outcome(&raw(0x81, &vec![b'*'; len]), MAX);
        o.assert_failed(FrameError::TextMessage);
        assert_eq!(o.close_code(), Some(1003));
    }
}

/// `2.x`: pings get pongs with their payload, pongs are ignored.
#[test]
fn pings_and_pongs() {
    // 2.1–2.4: no payload, text, binary, 125 bytes.
    let payloads: [&[u8]; 4] = [
        b"",
        b"Hello, world!",
        &[0x00, 0xff, 0xfe, 0xfd, 0xfc],
        &[0xfe; 125],
    ];
    for p in payloads {
        let o = outcome(&raw(0x89, p), MAX);
        assert_eq!(
            o.sent,
            [Sent {
                opcode: 0xa,
                payload: p.to_vec()
            }]
        );
        assert_eq!(o.end, None);
    }
    // 2.5: 126 bytes is over a control frame's limit.
    outcome(&raw(0x89, &[0xfe; 126]), MAX).assert_failed(FrameError::ControlTooLong);
    // 2.6: 125 bytes a byte at a time (outcome does that).
    // 2.7, 2.8: unsolicited pongs are ignored.
    let pongs: [&[u8]; 2] = [b"", b"unsolicited pong payload"];
    for p in pongs {
        let o = outcome(&raw(0x8a, p), MAX);
        assert!(o.sent.is_empty() && o.end.is_none() && o.messages.is_empty());
    }
    // 2.9: an unsolicited pong, then a ping: one pong, for the ping.
    let mut input = raw(0x8a, b"unsolicited");
    input.extend(raw(0x89, b"ping"));
    assert_eq!(
        outcome(&input, MAX).sent,
        [Sent {
            opcode: 0xa,
            payload: b"ping".to_vec()
        }]
    );
    // 2.10, 2.11: ten pings, ten pongs in order.
    let input: Vec<u8> = (0..10u8).flat_map(|i| raw(0x89, &[i; 3])).collect();
    let o = outcome(&input, MAX);
    let expected: Vec<Sent> = (0..10u8)
        .map(|i| Sent {
            opcode: 0xa,
            payload: vec![i; 3],
        })
        .collect();
    assert_eq!(o.sent, expected);
}

/// `3.x`: an RSV bit without a negotiated extension is a protocol error,
/// on data and control frames alike; what came before it is delivered.
#[test]
fn reserved_bits() {
    for rsv in [0x40, 0x20, 0x10, 0x60, 0x70] {
        for op in [0x2, 0x9, 0x8] {
            let o = outcome(&raw(0x80 | rsv | op, b"x\x03"), MAX);
            o.assert_failed(FrameError::ReservedBits);
        }
        // 3.2: a valid message, then a bad one, then a ping never answered.
        let mut input = bin(b"ok");
        input.extend(raw(0x80 | rsv | 0x2, b"bad"));
        input.extend(raw(0x89, b""));
        let o = outcome(&input, MAX);
        assert_eq!(o.messages, [b"ok".to_vec()]);
        assert_eq!(o.sent.len(), 1);
        o.assert_failed(FrameError::ReservedBits);
    }
}

/// `4.x`: reserved opcodes, non-control (3–7) and control (11–15).
#[test]
fn reserved_opcodes() {
    for op in (3..=7).chain(11..=15) {
        let o = outcome(&raw(0x80 | op, b"reserved"), MAX);
        o.assert_failed(FrameError::ReservedOpcode(op));
        // 4.1.2/4.2.2: with a valid message before and a ping after.
        let mut input = bin(b"before");
        input.extend(raw(0x80 | op, b""));
        input.extend(raw(0x89, b""));
        let o = outcome(&input, MAX);
        assert_eq!(o.messages.len(), 1);
        o.assert_failed(FrameError::ReservedOpcode(op));
    }
}

/// `5.x`: fragmentation and continuation.
#[test]
fn fragmentation() {
    // 5.1, 5.2: fragmented ping and pong.
    for op in [0x9, 0xa] {
        let mut input = frag(op, false, b"frag");
        input.extend(frag(0x0, true, b"ment"));
        outcome(&input, MAX).assert_failed(FrameError::FragmentedControl);
    }
    // 5.3–5.5: two fragments; many fragments of one byte.
    let mut input = frag(0x2, false, b"frag");
    input.extend(frag(0x0, true, b"ment1"));
    assert_eq!(outcome(&input, MAX).messages, [b"fragment1".to_vec()]);
    let mut input = frag(0x2, false, b"a");
    for _ in 0..100 {
        input.extend(frag(0x0, false, b"b"));
    }
    input.extend(frag(0x0, true, b"c"));
    let mut expected = b"a".to_vec();
    expected.extend([b'b'; 100]);
    expected.push(b'c');
    assert_eq!(outcome(&input, MAX).messages, [expected]);
    // 5.6–5.8: a ping between fragments is answered at once.
    let mut input = frag(0x2, false, b"frag");
    input.extend(raw(0x89, b"between"));
    input.extend(frag(0x0, true, b"ment"));
    let o = outcome(&input, MAX);
    assert_eq!(o.messages, [b"fragment".to_vec()]);
    assert_eq!(
        o.sent,
        [Sent {
            opcode: 0xa,
            payload: b"between".to_vec()
        }]
    );
    // 5.9–5.14: a continuation with nothing to continue, FIN or not.
    for fin in [true, false] {
        let mut input = frag(0x0, fin, b"orphan");
        input.extend(bin(b"never"));
        outcome(&input, MAX).assert_failed(FrameError::UnexpectedContinuation);
    }
    // After a complete fragmented message, a continuation is an orphan too.
    let mut input = frag(0x2, false, b"a");
    input.extend(frag(0x0, true, b"b"));
    input.extend(frag(0x0, true, b"c"));
    let o = outcome(&input, MAX);
    assert_eq!(o.messages, [b"ab".to_vec()]);
    o.assert_failed(FrameError::UnexpectedContinuation);
    // 5.15, 5.18: a new message inside a fragmented one.
    for op in [0x2, 0x1] {
        let mut input = frag(0x2, false, b"first");
        input.extend(frag(op, true, b"second"));
        outcome(&input, MAX).assert_failed(FrameError::ExpectedContinuation);
    }
    // A fragmented text message is refused at its first frame.
    let mut input = frag(0x1, false, b"te");
    input.extend(frag(0x0, true, b"xt"));
    outcome(&input, MAX).assert_failed(FrameError::TextMessage);
    // Empty fragments.
    let mut input = frag(0x2, false, b"");
    input.extend(frag(0x0, false, b""));
    input.extend(frag(0x0, true, b""));
    assert_eq!(outcome(&input, MAX).messages, [Vec::<u8>::new()]);
}

/// `7.5.1` and `6.x` as they apply to the mapping: a close reason must be
/// UTF-8, or the answer is 1007.
#[test]
fn utf8_in_close_reasons() {
    let valid: [&[u8]; 4] = [
        b"",
        "Hello-µ@ßöäüàá-UTF-8!!".as_bytes(),
        "κόσμε".as_bytes(),
        b"\xf4\x8f\xbf\xbf", // U+10FFFF
    ];
    for reason in valid {
        let o = outcome(&close(1000, reason), MAX);
        assert_eq!(
            o.end,
            Some(WsEnd::PeerClosed(Some(CloseCode::NORMAL))),
            "{reason:?}"
        );
        assert_eq!(o.close_code(), Some(1000));
    }
    let invalid: [&[u8]; 6] = [
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
        b"\xff",
        b"\xc0\xaf",         // overlong '/'
        b"\xed\xa0\x80",     // a surrogate
        b"\xf4\x90\x80\x80", // above U+10FFFF
        b"\xce",             // cut in the middle
    ];
    for reason in invalid {
        let o = outcome(&close(1000, reason), MAX);
        o.assert_failed(FrameError::BadClose(CloseError::InvalidReason));
        assert_eq!(o.close_code(), Some(1007));
    }
}

/// `7.x`: close handling.
#[test]
fn close_handling() {
    // 7.1.1: a message, then a close: the message, then the echo.
    let mut input = bin(b"Hello World!");
    input.extend(close(1000, b""));
    let o = outcome(&input, MAX);
    assert_eq!(o.messages, [b"Hello World!".to_vec()]);
    assert_eq!(o.close_code(), Some(1000));
    // 7.1.2, 7.1.3, 7.1.5: a second close, a ping, a message after the
    // close get nothing.
    for after in [close(1000, b""), raw(0x89, b"ping"), bin(b"late")] {
        let mut input = close(1000, b"");
        input.extend(after);
        let o = outcome(&input, MAX);
        assert_eq!(o.sent.len(), 1);
        assert!(o.messages.is_empty());
    }
    // 7.1.4: a close between fragments ends it; the partial message is dropped.
    let mut input = frag(0x2, false, b"frag");
    input.extend(close(1000, b""));
    input.extend(frag(0x0, true, b"ment"));
    let (o, dec) = feed(&input, MAX, 1);
    assert!(o.messages.is_empty());
    assert_eq!(o.end, Some(WsEnd::PeerClosed(Some(CloseCode::NORMAL))));
    assert_eq!(dec.held_capacity(), 0);
    // 7.3.1: an empty close gets an empty close.
    let o = outcome(&raw(0x88, b""), MAX);
    assert_eq!(
        o.sent,
        [Sent {
            opcode: 0x8,
            payload: Vec::new()
        }]
    );
    assert_eq!(o.end, Some(WsEnd::PeerClosed(None)));
    // 7.3.2: a 1-byte payload.
    outcome(&raw(0x88, b"a"), MAX).assert_failed(FrameError::BadClose(CloseError::TooShort));
    // 7.3.3–7.3.5: a code alone, with a reason, with a 123-byte reason.
    let reasons: [&[u8]; 3] = [b"", b"Hello World!", &[b'*'; 123]];
    for reason in reasons {
        let o = outcome(&close(1000, reason), MAX);
        assert_eq!(
            o.sent,
            [Sent {
                opcode: 0x8,
                payload: vec![0x03, 0xe8]
            }]
        );
    }
    // 7.3.6: a 124-byte reason makes the payload 126: too long.
    outcome(&close(1000, &[b'*'; 124]), MAX).assert_failed(FrameError::ControlTooLong);
}

/// `7.7.x`, `7.9.x`, `7.13.x`: which close codes are echoed and which are
/// protocol errors.
#[test]
fn close_codes() {
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        let o = outcome(&close(code, b""), MAX);
        assert_eq!(
            o.end,
            Some(WsEnd::PeerClosed(Some(CloseCode(code)))),
            "{code}"
        );
        assert_eq!(o.close_code(), Some(code), "echo {code}");
    }
    for code in [
        0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let o = outcome(&close(code, b""), MAX);
        o.assert_failed(FrameError::BadClose(CloseError::InvalidCode(code)));
        assert_eq!(o.close_code(), Some(1002), "{code}");
    }
}

/// `9.x` and the mapping's limit: a message of `max_message` bytes passes,
/// one more is 1009, decided from the header before the payload arrives.
#[test]
fn limits() {
    let max = 1000;
    assert_eq!(outcome(&bin(&payload(1000)), max).messages, [payload(1000)]);
    let input = bin(&payload(1001));
    let too_big = FrameError::MessageTooLarge { len: 1001, max };
    outcome(&input, max).assert_failed(too_big.clone());
    // The header alone (4 bytes: no mask key yet) is enough.
    let (o, _) = feed(&input[..4], max, 1);
    o.assert_failed(too_big);
    // Fragments count together.
    let mut input = frag(0x2, false, &payload(600));
    input.extend(frag(0x0, true, &payload(401)));
    let (o, dec) = feed(&input, max, 1);
    o.assert_failed(FrameError::MessageTooLarge { len: 1001, max });
    assert_eq!(dec.held_capacity(), 0);
    // A 64-bit length of 2^40 is too large; with its top bit set, invalid.
    let mut huge = vec![0x82, 0xff];
    huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
    outcome(&huge, MAX).assert_failed(FrameError::MessageTooLarge {
        len: 1 << 40,
        max: MAX,
    });
    let mut bad = vec![0x82, 0xff];
    bad.extend_from_slice(&(1u64 << 63).to_be_bytes());
    outcome(&bad, MAX).assert_failed(FrameError::BadLength);
    // The 1009 frame says why.
    let o = outcome(&bin(&payload(1001)), max);
    let reason = String::from_utf8(o.sent[0].payload[2..].to_vec()).unwrap();
    assert_eq!(reason, "message of 1001 bytes exceeds the maximum of 1000");
}

/// Client frames must be masked (RFC 6455 §5.1): any unmasked frame is 1002.
#[test]
fn unmasked_frames() {
    for b0 in [0x82, 0x89, 0x88, 0x02, 0x80] {
        let o = outcome(&[b0, 0x00], MAX);
        o.assert_failed(FrameError::Unmasked);
    }
    // Decided from the first two bytes: nothing else is waited for.
    let o = outcome(&[0x82, 0x7f], MAX);
    o.assert_failed(FrameError::Unmasked);
}
