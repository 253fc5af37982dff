//! Telnet framing (RFC 854/855) for the chat service: a sans-IO decoder that sits
//! before line framing and owns everything the chat port does with `IAC` (0xFF).
//!
//! [`TelnetDecoder`] removes command sequences from the byte stream and says, in
//! stream order, what the chat core must do (the user-facing rules are in
//! `docs/PROTOCOL.md`, section "Telnet"):
//!
//! * `IAC IAC` is one literal 0xFF data byte (which then fails UTF-8 validation
//!   like any other);
//! * `IAC IP` (telnet's Ctrl-C) is an [`Event::Interrupt`]: discard the partial line;
//! * `IAC x` for any other `x` below `SB` (`NOP`, `AYT`, `DM`, `BRK`, `AO`, `EC`,
//!   `EL`, `GA`, a stray `SE`, or a byte that is no command at all) is removed;
//! * `IAC WILL/WONT/DO/DONT opt` is removed; every option is refused: `DO x` is
//!   answered `IAC WONT x` and `WILL x` is answered `IAC DONT x`, each at most once
//!   per (command, option) for the decoder's life; `WONT`/`DONT` are not answered.
//!   The one exception is `DO TIMING-MARK` (option 6, RFC 860), answered
//!   `IAC WILL TIMING-MARK` every time, where it stands in the stream;
//! * `IAC SB … IAC SE` is removed; a subnegotiation still open after
//!   [`SB_LIMIT`] bytes is abandoned and the bytes after those are data again.
//!
//! The decoder keeps its state across calls, so a sequence may be split across
//! reads at any byte. It never allocates, emits nothing unasked, and its replies
//! are bounded: at most 2 × 256 refusals over its whole life, plus one
//! 3-byte timing-mark reply per `IAC DO TIMING-MARK` received (never more reply
//! bytes than input bytes, so a client flooding `DO TIMING-MARK` is bounded by the
//! chat core's send-queue limit like any slow reader).
//!
//! ```
//! use echochat::telnet::{Event, TelnetDecoder};
//! let mut t = TelnetDecoder::new();
//! // telnet's Ctrl-C, then a line.
//! let events: Vec<Event<'_>> = t.feed(b"\xff\xf4\xff\xfd\x06hello\r\n").collect();
//! assert_eq!(
//!     events,
//!     [Event::Interrupt, Event::Reply([0xff, 0xfb, 0x06]), Event::Data(b"hello\r\n")]
//! );
//! ```

/// Interpret As Command: starts every telnet command.
pub const IAC: u8 = 255;
/// `DONT opt`: asks the peer to stop using an option.
pub const DONT: u8 = 254;
/// `DO opt`: asks the peer to use an option.
pub const DO: u8 = 253;
/// `WONT opt`: refuses (or stops using) an option.
pub const WONT: u8 = 252;
/// `WILL opt`: offers to use an option.
pub const WILL: u8 = 251;
/// Starts a subnegotiation (`IAC SB opt … IAC SE`).
pub const SB: u8 = 250;
/// Interrupt Process: telnet sends `IAC IP` for Ctrl-C.
pub const IP: u8 = 244;
/// Ends a subnegotiation.
pub const SE: u8 = 240;
/// The TIMING-MARK option (RFC 860): telnet sends `IAC DO TIMING-MARK` after
/// `IAC IP` and discards output until it is answered.
pub const TIMING_MARK: u8 = 6;
/// Most bytes (counted from the one after `IAC SB`, escapes included) a
/// subnegotiation may hold before it is abandoned.
pub const SB_LIMIT: usize = 4096;

/// What the decoder found, in stream order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// Data bytes (a run of the input; for `IAC IAC` the single literal 0xFF).
    Data(&'a [u8]),
    /// `IAC IP`: the peer interrupted; discard the partial line typed so far.
    Interrupt,
    /// Bytes to send back to the peer (`IAC WONT x`, `IAC DONT x` or `IAC WILL TM`).
    Reply([u8; 3]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Data,
    /// After `IAC`.
    Iac,
    /// After `IAC` and one of `WILL`/`WONT`/`DO`/`DONT`: the option comes next.
    Option(u8),
    /// Inside `IAC SB …`, `n` bytes in; `iac`: the last one was an `IAC`.
    Sub {
        n: usize,
        iac: bool,
    },
}

/// Per-connection telnet decoder (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct TelnetDecoder {
    state: State,
    /// Options already refused after `DO` (answered `WONT`).
    refused_do: [u64; 4],
    /// Options already refused after `WILL` (answered `DONT`).
    refused_will: [u64; 4],
}

impl Default for TelnetDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Sets bit `opt` in `set`; `true` if it was clear.
fn first_time(set: &mut [u64; 4], opt: u8) -> bool {
    let (word, bit) = (usize::from(opt / 64), 1u64 << (opt % 64));
    let fresh = set[word] & bit == 0;
    set[word] |= bit;
    fresh
}

impl TelnetDecoder {
    /// A decoder at the start of a connection.
    pub const fn new() -> Self {
        TelnetDecoder {
            state: State::Data,
            refused_do: [0; 4],
            refused_will: [0; 4],
        }
    }

    /// Whether the decoder is between sequences (a chunk ending here split nothing).
    pub fn is_idle(&self) -> bool {
        self.state == State::Data
    }

    /// Decodes from the front of `input` up to and including the next event and
    /// advances `input` past what it consumed. `None` once `input` is empty (bytes
    /// of an unfinished sequence are kept in the decoder's state).
    ///
    /// Events borrow only `input`, not the decoder, so the caller may act on each
    /// one (and touch whatever owns the decoder) before asking for the next.
    pub fn decode<'a>(&mut self, input: &mut &'a [u8]) -> Option<Event<'a>> {
        let data: &'a [u8] = input;
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            i += 1;
            match self.state {
                State::Data => {
                    if b == IAC {
                        self.state = State::Iac;
                        continue;
                    }
                    // A run of data bytes: everything up to the next IAC.
                    let start = i - 1;
                    let end = memchr::memchr(IAC, &data[start..]).map_or(data.len(), |k| start + k);
                    *input = &data[end..];
                    return Some(Event::Data(&data[start..end]));
                }
                State::Iac => {
                    self.state = State::Data;
                    let ev = match b {
                        IAC => Some(Event::Data(&data[i - 1..i])),
                        IP => Some(Event::Interrupt),
                        WILL..=DONT => {
                            self.state = State::Option(b);
                            None
                        }
                        SB => {
                            self.state = State::Sub { n: 0, iac: false };
                            None
                        }
                        _ => None,
                    };
                    if ev.is_some() {
                        *input = &data[i..];
                        return ev;
                    }
                }
                State::Option(cmd) => {
                    self.state = State::Data;
                    let reply = match cmd {
                        DO if b == TIMING_MARK => Some(WILL),
                        DO => first_time(&mut self.refused_do, b).then_some(WONT),
                        WILL => first_time(&mut self.refused_will, b).then_some(DONT),
                        _ => None,
                    };
                    if let Some(verb) = reply {
                        *input = &data[i..];
                        return Some(Event::Reply([IAC, verb, b]));
                    }
                }
                State::Sub { n, iac } => {
                    let n = n + 1;
                    self.state = if (iac && b == SE) || n >= SB_LIMIT {
                        State::Data
                    } else {
                        State::Sub {
                            n,
                            iac: !iac && b == IAC,
                        }
                    };
                }
            }
        }
        *input = &data[data.len()..];
        None
    }

    /// Every event in `input`, in order (an iterator over [`decode`](Self::decode)).
    pub fn feed<'d, 'a>(&'d mut self, input: &'a [u8]) -> Events<'d, 'a> {
        Events {
            decoder: self,
            input,
        }
    }
}

/// Iterator returned by [`TelnetDecoder::feed`].
#[derive(Debug)]
pub struct Events<'d, 'a> {
    decoder: &'d mut TelnetDecoder,
    input: &'a [u8],
}

impl<'a> Iterator for Events<'_, 'a> {
    type Item = Event<'a>;

    fn next(&mut self) -> Option<Event<'a>> {
        self.decoder.decode(&mut self.input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Owned events, with adjacent data runs merged (chunking may split runs).
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Data(Vec<u8>),
        Interrupt,
        Reply([u8; 3]),
    }

    fn push(out: &mut Vec<Ev>, e: Event<'_>) {
        match (e, out.last_mut()) {
            (Event::Data(d), Some(Ev::Data(prev))) => prev.extend_from_slice(d),
            (Event::Data(d), _) => out.push(Ev::Data(d.to_vec())),
            (Event::Interrupt, _) => out.push(Ev::Interrupt),
            (Event::Reply(r), _) => out.push(Ev::Reply(r)),
        }
    }

    fn run(t: &mut TelnetDecoder, chunks: &[&[u8]]) -> Vec<Ev> {
        let mut out = Vec::new();
        for c in chunks {
            for e in t.feed(c) {
                if let Event::Data(d) = e {
                    assert!(!d.is_empty(), "empty data event");
                }
                push(&mut out, e);
            }
        }
        out
    }

    fn decode(input: &[u8]) -> Vec<Ev> {
        run(&mut TelnetDecoder::new(), &[input])
    }

    fn data(d: &[u8]) -> Ev {
        Ev::Data(d.to_vec())
    }

    #[test]
    fn plain_data_is_one_borrowed_run() {
        let mut t = TelnetDecoder::new();
        let input = b"hello\r\nworld\n";
        let evs: Vec<_> = t.feed(input).collect();
        assert_eq!(evs, [Event::Data(input)]);
        assert!(t.feed(b"").next().is_none());
    }

    #[test]
    fn one_byte_commands_are_removed() {
        // NOP, DM, BRK, AO, AYT, EC, EL, GA, stray SE, and a non-command byte.
        for cmd in [241u8, 242, 243, 245, 246, 247, 248, 249, SE, b'a', 0] {
            assert_eq!(decode(&[b'x', IAC, cmd, b'y']), [data(b"xy")], "IAC {cmd}");
        }
    }

    #[test]
    fn iac_iac_is_a_literal_ff() {
        assert_eq!(decode(b"a\xff\xffb"), [data(b"a\xffb")]);
        assert_eq!(decode(b"\xff\xff\xff\xff"), [data(b"\xff\xff")]);
    }

    #[test]
    fn interrupt_is_an_event_in_place() {
        assert_eq!(
            decode(b"ab\xff\xf4cd"),
            [data(b"ab"), Ev::Interrupt, data(b"cd")]
        );
    }

    #[test]
    fn do_and_will_are_refused_once_per_option() {
        let mut t = TelnetDecoder::new();
        assert_eq!(
            run(
                &mut t,
                &[b"\xff\xfd\x01\xff\xfb\x01\xff\xfd\x01\xff\xfb\x01x"]
            ),
            [
                Ev::Reply([IAC, WONT, 1]),
                Ev::Reply([IAC, DONT, 1]),
                data(b"x")
            ]
        );
        // Still remembered in a later read; another option is answered.
        assert_eq!(
            run(&mut t, &[b"\xff\xfd\x01\xff\xfd\x03"]),
            [Ev::Reply([IAC, WONT, 3])]
        );
        // Every option, including IAC (255) as an option byte.
        let mut t = TelnetDecoder::new();
        for opt in 0..=255u8 {
            assert_eq!(
                run(&mut t, &[&[IAC, DO, opt, IAC, WILL, opt]]).len(),
                2,
                "option {opt}"
            );
        }
    }

    #[test]
    fn wont_and_dont_are_not_answered() {
        assert_eq!(
            decode(b"\xff\xfc\x01\xff\xfe\x06\xff\xfc\x06z"),
            [data(b"z")]
        );
    }

    #[test]
    fn timing_mark_is_answered_every_time() {
        let evs = decode(b"a\xff\xfd\x06b\xff\xfd\x06\xff\xfd\x06");
        let tm = Ev::Reply([IAC, WILL, TIMING_MARK]);
        assert_eq!(evs, [data(b"a"), tm.clone(), data(b"b"), tm.clone(), tm]);
        // WILL TIMING-MARK from the peer is refused like any other option.
        assert_eq!(
            decode(b"\xff\xfb\x06\xff\xfb\x06"),
            [Ev::Reply([IAC, DONT, 6])]
        );
    }

    #[test]
    fn telnet_ctrl_c_sequence() {
        assert_eq!(
            decode(b"\xff\xf4\xff\xfd\x06again\r\n"),
            [
                Ev::Interrupt,
                Ev::Reply([IAC, WILL, TIMING_MARK]),
                data(b"again\r\n")
            ]
        );
    }

    #[test]
    fn subnegotiation_is_removed() {
        // NAWS 80x24 with an escaped 255 inside, then data.
        assert_eq!(
            decode(b"a\xff\xfa\x1f\x00\xff\xff\x00\x18\xff\xf0b"),
            [data(b"ab")]
        );
        // Other IAC x inside SB (even IAC DO 6, IAC IP) do nothing.
        assert_eq!(
            decode(b"\xff\xfa\x18\xff\xfd\x06\xff\xf4\xff\xf0ok"),
            [data(b"ok")]
        );
    }

    #[test]
    fn subnegotiation_is_bounded() {
        let mut input = alloc::vec![IAC, SB];
        input.extend(core::iter::repeat_n(b'q', SB_LIMIT - 1));
        // Byte number SB_LIMIT (counted after IAC SB) is still swallowed...
        input.push(b'z');
        // ...and what follows is data again, even an SE.
        input.extend_from_slice(b"ab\xff\xf0cd");
        assert_eq!(decode(&input), [data(b"abcd")]);
        // Exactly at the limit, IAC SE still ends it normally.
        let mut input = alloc::vec![IAC, SB];
        input.extend(core::iter::repeat_n(b'q', SB_LIMIT - 2));
        input.extend_from_slice(&[IAC, SE]);
        input.extend_from_slice(b"ok");
        assert_eq!(decode(&input), [data(b"ok")]);
        // One byte later it does not: the IAC is the SB's last byte, so the SE
        // after it is data.
        let mut input = alloc::vec![IAC, SB];
        input.extend(core::iter::repeat_n(b'q', SB_LIMIT - 1));
        input.extend_from_slice(&[IAC, SE]);
        input.extend_from_slice(b"ok");
        assert_eq!(decode(&input), [data(b"\xf0ok")]);
    }

    /// A stream using every kind of sequence.
    fn mixed() -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"hi\xff\xff\xff\xf1\xff\xf4x\xff\xfd\x06\xff\xfd\x06");
        v.extend_from_slice(b"\xff\xfd\x18\xff\xfd\x18\xff\xfb\x1f\xff\xfe\x01\xff\xfc\x01");
        v.extend_from_slice(b"\xff\xfa\x18\x00\xff\xff\xff\xf0y\r\n\xff\xf6\xff");
        v
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let input = mixed();
        let whole = decode(&input);
        assert_eq!(
            whole,
            [
                data(b"hi\xff"),
                Ev::Interrupt,
                data(b"x"),
                Ev::Reply([IAC, WILL, 6]),
                Ev::Reply([IAC, WILL, 6]),
                Ev::Reply([IAC, WONT, 0x18]),
                Ev::Reply([IAC, DONT, 0x1f]),
                data(b"y\r\n"),
            ]
        );
        for a in 0..=input.len() {
            for b in a..=input.len() {
                let got = run(
                    &mut TelnetDecoder::new(),
                    &[&input[..a], &input[a..b], &input[b..]],
                );
                assert_eq!(got, whole, "split at {a} and {b}");
            }
        }
        let bytewise: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&mut TelnetDecoder::new(), &bytewise), whole);
    }

    #[test]
    fn decode_advances_one_event_at_a_time() {
        let mut t = TelnetDecoder::new();
        let mut input: &[u8] = b"ab\xff\xf4cd\xff";
        assert_eq!(t.decode(&mut input), Some(Event::Data(b"ab")));
        assert_eq!(input, b"\xff\xf4cd\xff");
        assert_eq!(t.decode(&mut input), Some(Event::Interrupt));
        assert_eq!(t.decode(&mut input), Some(Event::Data(b"cd")));
        assert!(t.is_idle());
        assert_eq!(t.decode(&mut input), None);
        assert!(input.is_empty());
        assert!(!t.is_idle(), "a trailing IAC waits for its command");
        let mut rest: &[u8] = b"\xff";
        assert_eq!(t.decode(&mut rest), Some(Event::Data(b"\xff")));
    }

    #[test]
    fn replies_are_bounded_by_input() {
        // A flood of every DO and WILL, twice: each refusal once, TM each time.
        let mut input = Vec::new();
        for _ in 0..2 {
            for opt in 0..=255u8 {
                input.extend_from_slice(&[IAC, DO, opt, IAC, WILL, opt]);
            }
        }
        let evs = decode(&input);
        let replies = evs.iter().filter(|e| matches!(e, Ev::Reply(_))).count();
        assert_eq!(replies, 256 + 256 + 1);
        assert!(replies * 3 <= input.len());
    }
}
