//! Telnet on the chat port (`docs/PROTOCOL.md`, "Telnet"): commands are removed
//! before line framing, options are refused once, TIMING-MARK is answered in
//! stream order, `IAC IP` discards the partial line, and replies go through the
//! send queue like any other output.

use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use super::*;
use crate::echo::{EchoConfig, EchoConn};

/// telnet's Ctrl-C: `IAC IP IAC DO TIMING-MARK`.
const CTRL_C: &[u8] = b"\xff\xf4\xff\xfd\x06";
/// `IAC WILL TIMING-MARK`.
const WILL_TM: &[u8] = b"\xff\xfb\x06";

impl H {
    /// Takes every byte `id` received, telnet replies included.
    fn take_raw(&mut self, id: ConnId) -> Vec<u8> {
        self.inbox.remove(&id);
        self.raw.remove(&id).unwrap_or_default()
    }
}

#[test]
fn ctrl_c_then_a_line_is_the_line_and_timing_mark_is_answered() {
    // The bug: `ff f4 ff fd 06` in front of `hello\r\n` was `! invalid utf-8`
    // and TIMING-MARK was never answered, so telnet stopped showing output.
    let mut input = CTRL_C.to_vec();
    input.extend_from_slice(b"hello\r\n");
    // In one read, and split at every byte boundary.
    for at in 0..=input.len() {
        let mut h = H::default();
        let [a, b] = h.open_n(2)[..] else {
            unreachable!()
        };
        h.raw.clear();
        h.send_bytes(a, &input[..at]);
        h.send_bytes(a, &input[at..]);
        assert_eq!(h.take(b), "<guest1> hello\n", "split at {at}");
        assert_eq!(
            h.take_raw(a),
            WILL_TM,
            "split at {at}: no `! invalid utf-8`"
        );
        // And a keeps receiving lines afterwards.
        h.send(b, "still there?\n");
        assert_eq!(h.take(a), "<guest2> still there?\n");
    }
}

#[test]
fn interrupt_discards_the_partial_line() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send(a, "rm -rf typo");
    h.send_bytes(a, b"\xff\xf4hello\r\n");
    assert_eq!(h.take(b), "<guest1> hello\n");
    // In the same read as complete lines: those before it stay.
    h.send_bytes(a, b"one\nhalf\xff\xf4two\n\xff\xf4");
    assert_eq!(h.lines(b), ["<guest1> one", "<guest1> two"]);
    // It also ends a too-long line being skipped.
    let mut h = H::new(cfg(|c| c.max_line = 4));
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send(a, "much too long");
    assert_eq!(h.take(a), "! line too long (max 4 bytes)\n");
    h.send_bytes(a, b"\xff\xf4ok\n");
    assert_eq!(h.take(b), "<guest1> ok\n");
    h.quiet(&[a]);
}

#[test]
fn timing_mark_comes_after_the_replies_to_earlier_lines() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.raw.clear();
    h.send_bytes(a, b"/who\n\xff\xfd\x06/nosuch\n\xff\xfd\x06");
    let mut want = b"* in #lobby: guest1, guest2\n".to_vec();
    want.extend_from_slice(WILL_TM);
    want.extend_from_slice(b"! unknown command /nosuch\n");
    want.extend_from_slice(WILL_TM);
    assert_eq!(h.take_raw(a), want);
    h.quiet(&[b]);
    // Every time, not once.
    for _ in 0..3 {
        h.send_bytes(a, CTRL_C);
        assert_eq!(h.take_raw(a), WILL_TM);
    }
}

#[test]
fn options_are_refused_once_per_command_and_option() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.raw.clear();
    // What a telnet client typically offers: WILL TTYPE, WILL NAWS, DO ECHO, DO SGA.
    let offer = b"\xff\xfb\x18\xff\xfb\x1f\xff\xfd\x01\xff\xfd\x03";
    h.send_bytes(a, offer);
    assert_eq!(
        h.take_raw(a),
        b"\xff\xfe\x18\xff\xfe\x1f\xff\xfc\x01\xff\xfc\x03"
    );
    // Asked again: no answer (RFC 854 loop avoidance); WONT/DONT are never answered.
    h.send_bytes(a, offer);
    h.send_bytes(a, b"\xff\xfc\x01\xff\xfe\x01\xff\xfc\x06\xff\xfe\x06");
    assert_eq!(h.take_raw(a), b"");
    // Per connection: b gets its own answers.
    h.send_bytes(b, b"\xff\xfd\x01");
    assert_eq!(h.take_raw(b), b"\xff\xfc\x01");
    // Data around the commands is untouched.
    h.send_bytes(a, b"hel\xff\xfd\x05lo\n");
    assert_eq!(h.take_raw(a), b"\xff\xfc\x05");
    assert_eq!(h.take(b), "<guest1> hello\n");
}

#[test]
fn one_byte_commands_and_subnegotiations_are_removed() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.raw.clear();
    // NOP, AYT, AO, EC, EL, GA, NAWS subnegotiation (with an escaped 255).
    h.send_bytes(
        a,
        b"a\xff\xf1b\xff\xf6c\xff\xf5\xff\xf7\xff\xf8\xff\xf9d\xff\xfa\x1f\x00\xff\xff\x00\x18\xff\xf0e\n",
    );
    assert_eq!(h.take(b), "<guest1> abcde\n");
    assert_eq!(h.take_raw(a), b"", "nothing is sent unasked");
}

#[test]
fn subnegotiation_is_abandoned_after_4_kib() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    let mut input = b"\xff\xfa".to_vec();
    input.extend(core::iter::repeat_n(b'q', crate::telnet::SB_LIMIT));
    input.extend_from_slice(b"ok\n");
    for chunk in input.chunks(1000) {
        h.send_bytes(a, chunk);
    }
    assert_eq!(h.take(b), "<guest1> ok\n");
    h.quiet(&[a]);
}

#[test]
fn iac_iac_is_a_literal_ff_and_fails_utf8() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send_bytes(a, b"caf\xff\xff\n");
    assert_eq!(h.take(a), "! invalid utf-8\n");
    h.quiet(&[b]);
}

#[test]
fn eof_inside_a_command_still_processes_the_last_line() {
    let mut h = H::default();
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.send_bytes(a, b"bye\xff\xfd");
    h.eof(a);
    assert_eq!(
        h.lines(b),
        ["<guest1> bye", "* guest1 left (connection closed)"]
    );
}

#[test]
fn timing_mark_flood_is_bounded_by_the_send_queue() {
    let mut h = H::new(cfg(|c| c.send_queue = 1000));
    let [a, b] = h.open_n(2)[..] else {
        unreachable!()
    };
    for id in [a, b] {
        let q = h.s.queued(id).unwrap();
        h.s.handle_flushed(id, q).unwrap();
    }
    h.raw.clear();
    h.auto_flush = false;
    // a never reads: each 3-byte reply costs 3 + LINE_OVERHEAD; past half its
    // queue a is paused (the rest of its input waits), then dropped after the stall
    // timeout.
    let flood = b"\xff\xfd\x06".repeat(10_000);
    h.send_bytes(a, &flood);
    assert!(!h.s.wants_read(a));
    let replies = 500 / (3 + LINE_OVERHEAD) + 1;
    assert_eq!(h.take_raw(a), b"\xff\xfb\x06".repeat(replies));
    h.now = h.now + Duration::from_secs(2);
    h.s.handle_timeout(h.now);
    h.drain();
    assert_eq!(h.closed[&a], CloseReason::SendQueueExceeded);
    assert_eq!(h.take(b), "* guest1 left (send queue exceeded)\n");
}

#[test]
fn refusal_flood_is_bounded_per_option() {
    let mut h = H::default();
    let [a, _b] = h.open_n(2)[..] else {
        unreachable!()
    };
    h.raw.clear();
    let mut flood = Vec::new();
    for _ in 0..10 {
        for opt in 0..=255u8 {
            flood.extend_from_slice(&[0xff, 0xfd, opt, 0xff, 0xfb, opt]);
        }
    }
    h.send_bytes(a, &flood);
    let got = h.take_raw(a);
    // 256 DONTs, 255 WONTs, and one WILL TIMING-MARK per DO TIMING-MARK.
    assert_eq!(got.len(), 3 * (256 + 255 + 10));
    assert!(h.s.is_open(a));
}

#[test]
fn idle_timeout_counts_telnet_traffic_as_activity() {
    let mut h = H::new(cfg(|c| c.idle_timeout = Some(Duration::from_secs(10))));
    let [a] = h.open_n(1)[..] else { unreachable!() };
    for _ in 0..5 {
        h.now = h.now + Duration::from_secs(6);
        h.s.handle_timeout(h.now);
        h.send_bytes(a, b"\xff\xf1"); // IAC NOP, a keep-alive
    }
    assert!(h.s.is_open(a));
}

#[test]
fn echo_service_stays_byte_transparent() {
    let mut e = EchoConn::new(EchoConfig::default());
    let input: Vec<u8> = [CTRL_C, b"\xff\xff\xff\xfa x \xff\xf0\n"].concat();
    assert_eq!(e.handle_data(&input).unwrap(), input.len());
    let mut out = vec![];
    while let Some(chunk) = e.poll_transmit() {
        out.extend_from_slice(chunk);
        let n = chunk.len();
        e.handle_written(n).unwrap();
    }
    assert_eq!(out, input);
}
