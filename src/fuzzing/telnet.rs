//! Fuzz body for [`TelnetDecoder`]: chunking invariance, agreement with the
//! model's byte-by-byte telnet parser, and bounds on what it emits.

use alloc::vec::Vec;

use crate::telnet::{Event, TelnetDecoder, DONT, IAC, TIMING_MARK, WILL, WONT};

use super::framer::chunk;
use super::model::{Act, Telnet};

/// What a stream decodes to, with adjacent data runs merged (chunking may cut runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TelnetOut {
    /// Data bytes.
    Data(Vec<u8>),
    /// `IAC IP`.
    Interrupt,
    /// Bytes to send back.
    Reply([u8; 3]),
}

fn push(out: &mut Vec<TelnetOut>, e: TelnetOut) {
    match (e, out.last_mut()) {
        (TelnetOut::Data(d), Some(TelnetOut::Data(prev))) => prev.extend_from_slice(&d),
        (TelnetOut::Data(d), _) if d.is_empty() => {}
        (e, _) => out.push(e),
    }
}

/// Fuzz entry point: `[n, n chunk sizes, stream…]`; the stream is decoded in one
/// call, in chunks of those sizes (cycled), and one byte at a time.
pub fn telnet(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 16).min(rest.len());
    let (sizes, stream) = rest.split_at(n);
    let sizes = if sizes.is_empty() { &[1u8][..] } else { sizes };
    check_telnet(stream, &chunk(stream, sizes));
}

/// Decodes `chunks` (whose concatenation is `stream`) and checks the result against
/// one call with `stream`, one byte per call, and the reference. Panics on any
/// difference or broken bound; returns the events.
pub fn check_telnet(stream: &[u8], chunks: &[&[u8]]) -> Vec<TelnetOut> {
    let expected = telnet_reference(stream);
    let one_shot = decode(&[stream]);
    assert_eq!(
        one_shot, expected,
        "one-shot decoding differs from the reference"
    );
    let chunked = decode(chunks);
    assert_eq!(chunked, expected, "chunked decoding differs from one-shot");
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(
        decode(&bytes),
        expected,
        "1-byte decoding differs from one-shot"
    );
    check_bounds(stream, &expected);
    expected
}

/// The model's byte-by-byte telnet parser (written apart from the decoder).
pub fn telnet_reference(stream: &[u8]) -> Vec<TelnetOut> {
    let mut t = Telnet::default();
    let mut out = Vec::new();
    for &b in stream {
        match t.step(b) {
            Act::Nothing => {}
            Act::Byte(b) => push(&mut out, TelnetOut::Data(alloc::vec![b])),
            Act::Interrupt => push(&mut out, TelnetOut::Interrupt),
            Act::Reply(r) => push(&mut out, TelnetOut::Reply(r)),
        }
    }
    out
}

/// Runs a real decoder over `chunks` through [`TelnetDecoder::decode`], checking
/// that every call makes progress and every data event is non-empty.
fn decode(chunks: &[&[u8]]) -> Vec<TelnetOut> {
    let mut t = TelnetDecoder::new();
    let mut out = Vec::new();
    for c in chunks {
        let mut input: &[u8] = c;
        loop {
            let before = input.len();
            let Some(e) = t.decode(&mut input) else {
                assert!(input.is_empty(), "decode stopped with input left");
                break;
            };
            assert!(input.len() < before, "an event consumed no input");
            push(
                &mut out,
                match e {
                    Event::Data(d) => {
                        assert!(!d.is_empty(), "empty data event");
                        assert!(d.len() <= before, "data event longer than its input");
                        TelnetOut::Data(d.to_vec())
                    }
                    Event::Interrupt => TelnetOut::Interrupt,
                    Event::Reply(r) => TelnetOut::Reply(r),
                },
            );
        }
    }
    out
}

fn check_bounds(stream: &[u8], out: &[TelnetOut]) {
    let mut refused = alloc::collections::BTreeSet::new();
    let (mut data, mut replies, mut marks) = (0, 0, 0);
    for e in out {
        match e {
            TelnetOut::Data(d) => data += d.len(),
            TelnetOut::Interrupt => {}
            TelnetOut::Reply(r) => {
                replies += 1;
                match *r {
                    [IAC, WILL, TIMING_MARK] => marks += 1,
                    [IAC, verb @ (WONT | DONT), opt] => {
                        assert!(refused.insert((verb, opt)), "refused {verb} {opt} twice")
                    }
                    r => panic!("unasked reply {r:?}"),
                }
            }
        }
    }
    assert!(data <= stream.len(), "more data than input");
    assert!(
        replies * 3 <= stream.len(),
        "more reply bytes than input bytes"
    );
    let asked = stream
        .windows(3)
        .filter(|w| w == &[IAC, 0xFD, TIMING_MARK])
        .count();
    assert!(
        marks <= asked,
        "{marks} TIMING-MARK replies for {asked} requests"
    );
}
