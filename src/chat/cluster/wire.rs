//! The payload of one cluster event on the bus: how a node encodes what its users
//! did and how the other nodes decode it (`docs/cluster.md`, "Payloads").
//!
//! Binary, big-endian, length-prefixed: `b"EC"`, a version byte, the origin
//! ([`Header`]: node name, incarnation, sequence number), a kind byte, then the
//! kind's fields. Every payload comes from a peer, so decoding checks everything
//! (names against the nick charset, lines are single sanitized UTF-8 lines) and
//! fails with `None` instead of panicking; the caller counts and ignores it.

use alloc::string::String;
use alloc::vec::Vec;
use bytes::{BufMut, Bytes, BytesMut};

use crate::chat::text::{sanitize, valid_name};
use crate::chat::MAX_NAME;

const MAGIC: &[u8; 2] = b"EC";
const VERSION: u8 = 1;
/// Longest node name accepted (bytes).
pub(crate) const MAX_NODE: usize = 255;
/// Longest line carried (bytes, `\n` included): far above any `--max-line`.
const MAX_LINE: usize = 64 * 1024;
/// Most users in one heartbeat snapshot.
pub(crate) const MAX_USERS: usize = 100_000;

/// Who published an event, and where it is in that node's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    /// The node's name (`--node-name`).
    pub(crate) node: String,
    /// Distinguishes two runs of a node with the same name.
    pub(crate) incarnation: u64,
    /// 1, 2, 3, … per (node, incarnation): a gap is a missed event.
    pub(crate) seq: u64,
}

/// One event. Rooms are display names with their `#`; lines end in `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Body {
    /// The node is alive; these are all its users (nick, room).
    Heartbeat { users: Vec<(String, String)> },
    /// `nick` is now in `room` (arrived or joined); the room's members get `notice`.
    Enter {
        nick: String,
        room: String,
        notice: Bytes,
    },
    /// `nick` left `room` (for another room, or the server); members get `notice`.
    Exit {
        nick: String,
        room: String,
        notice: Bytes,
    },
    /// `old` is now `new`, in `room`; members get `notice`.
    Rename {
        old: String,
        new: String,
        room: String,
        notice: Bytes,
    },
    /// A line for every member of `room` (a message, `/me`).
    Say { room: String, line: Bytes },
    /// A private line for the user called `to` (any case).
    Pm { to: String, line: Bytes },
    /// The node shuts down: its users are gone (`server shutting down`).
    Bye,
}

const HEARTBEAT: u8 = 1;
const ENTER: u8 = 2;
const EXIT: u8 = 3;
const RENAME: u8 = 4;
const SAY: u8 = 5;
const PM: u8 = 6;
const BYE: u8 = 7;

fn put_str(buf: &mut BytesMut, s: &str) {
    // Names are at most MAX_NODE bytes (checked by the caller for the node name).
    buf.put_u16(s.len().min(u16::MAX as usize) as u16);
    buf.put_slice(&s.as_bytes()[..s.len().min(u16::MAX as usize)]);
}

fn put_line(buf: &mut BytesMut, line: &[u8]) {
    buf.put_u32(line.len() as u32);
    buf.put_slice(line);
}

/// Encodes one event.
pub(crate) fn encode(header: &Header, body: &Body) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_slice(MAGIC);
    buf.put_u8(VERSION);
    put_str(&mut buf, &header.node);
    buf.put_u64(header.incarnation);
    buf.put_u64(header.seq);
    match body {
        Body::Heartbeat { users } => {
            buf.put_u8(HEARTBEAT);
            buf.put_u32(users.len() as u32);
            for (nick, room) in users {
                put_str(&mut buf, nick);
                put_str(&mut buf, room);
            }
        }
        Body::Enter { nick, room, notice } | Body::Exit { nick, room, notice } => {
            buf.put_u8(if matches!(body, Body::Enter { .. }) {
                ENTER
            } else {
                EXIT
            });
            put_str(&mut buf, nick);
            put_str(&mut buf, room);
            put_line(&mut buf, notice);
        }
        Body::Rename {
            old,
            new,
            room,
            notice,
        } => {
            buf.put_u8(RENAME);
            put_str(&mut buf, old);
            put_str(&mut buf, new);
            put_str(&mut buf, room);
            put_line(&mut buf, notice);
        }
        Body::Say { room, line } => {
            buf.put_u8(SAY);
            put_str(&mut buf, room);
            put_line(&mut buf, line);
        }
        Body::Pm { to, line } => {
            buf.put_u8(PM);
            put_str(&mut buf, to);
            put_line(&mut buf, line);
        }
        Body::Bye => buf.put_u8(BYE),
    }
    buf.freeze()
}

/// A cursor over a payload; every read checks bounds.
struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    fn take(&mut self, n: usize) -> Option<Bytes> {
        let end = self.pos.checked_add(n)?;
        if end > self.buf.len() {
            return None;
        }
        let out = self.buf.slice(self.pos..end);
        self.pos = end;
        Some(out)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<usize> {
        let b = self.take(2)?;
        Some(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u32(&mut self) -> Option<usize> {
        let b = self.take(4)?;
        usize::try_from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok()
    }

    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Some(u64::from_be_bytes(a))
    }

    fn str(&mut self, max: usize) -> Option<String> {
        let n = self.u16()?;
        if n > max {
            return None;
        }
        let b = self.take(n)?;
        core::str::from_utf8(&b).ok().map(String::from)
    }

    fn nick(&mut self) -> Option<String> {
        self.str(MAX_NAME).filter(|n| valid_name(n))
    }

    fn room(&mut self) -> Option<String> {
        self.str(MAX_NAME + 1)
            .filter(|r| r.strip_prefix('#').is_some_and(valid_name))
    }

    /// One whole line: UTF-8, one `\n` at its end, nothing a terminal would obey.
    fn line(&mut self) -> Option<Bytes> {
        let n = self.u32()?;
        if n > MAX_LINE {
            return None;
        }
        let b = self.take(n)?;
        let text = core::str::from_utf8(&b).ok()?.strip_suffix('\n')?;
        let clean =
            !text.contains('\n') && matches!(sanitize(text), alloc::borrow::Cow::Borrowed(_));
        clean.then_some(b)
    }

    fn done(&self) -> bool {
        self.pos == self.buf.len()
    }
}

/// Decodes one event; `None` if anything is wrong with it.
pub(crate) fn decode(payload: Bytes) -> Option<(Header, Body)> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    if &r.take(2)?[..] != MAGIC || r.u8()? != VERSION {
        return None;
    }
    let node = r.str(MAX_NODE).filter(|n| !n.is_empty())?;
    let header = Header {
        node,
        incarnation: r.u64()?,
        seq: r.u64()?,
    };
    let body = match r.u8()? {
        HEARTBEAT => {
            let n = r.u32()?;
            if n > MAX_USERS {
                return None;
            }
            // Each user takes at least 4 bytes: no allocation beyond the payload's size.
            let mut users = Vec::with_capacity(n.min(r.buf.len() / 4));
            for _ in 0..n {
                users.push((r.nick()?, r.room()?));
            }
            Body::Heartbeat { users }
        }
        kind @ (ENTER | EXIT) => {
            let (nick, room, notice) = (r.nick()?, r.room()?, r.line()?);
            if kind == ENTER {
                Body::Enter { nick, room, notice }
            } else {
                Body::Exit { nick, room, notice }
            }
        }
        RENAME => Body::Rename {
            old: r.nick()?,
            new: r.nick()?,
            room: r.room()?,
            notice: r.line()?,
        },
        SAY => Body::Say {
            room: r.room()?,
            line: r.line()?,
        },
        PM => Body::Pm {
            to: r.nick()?,
            line: r.line()?,
        },
        BYE => Body::Bye,
        _ => return None,
    };
    r.done().then_some((header, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    fn header() -> Header {
        Header {
            node: "n1".into(),
            incarnation: 7,
            seq: 42,
        }
    }

    #[test]
    fn round_trip() {
        let bodies = vec![
            Body::Heartbeat {
                users: vec![
                    ("alice".into(), "#lobby".into()),
                    ("Bob".into(), "#Rust".into()),
                ],
            },
            Body::Enter {
                nick: "alice".into(),
                room: "#lobby".into(),
                notice: Bytes::from_static(b"* alice joined #lobby\n"),
            },
            Body::Exit {
                nick: "alice".into(),
                room: "#lobby".into(),
                notice: Bytes::from_static(b"* alice left (quit)\n"),
            },
            Body::Rename {
                old: "a".into(),
                new: "b".into(),
                room: "#x".into(),
                notice: Bytes::from_static(b"* a is now known as b\n"),
            },
            Body::Say {
                room: "#x".into(),
                line: Bytes::from_static("<a> héllo\n".as_bytes()),
            },
            Body::Pm {
                to: "bob".into(),
                line: Bytes::from_static(b"(pm) <a> hi\n"),
            },
            Body::Bye,
        ];
        for body in bodies {
            let bytes = encode(&header(), &body);
            assert_eq!(decode(bytes), Some((header(), body)));
        }
    }

    #[test]
    fn hostile_payloads_are_refused() {
        let say = |line: &'static [u8]| {
            encode(
                &header(),
                &Body::Say {
                    room: "#x".into(),
                    line: Bytes::from_static(line),
                },
            )
        };
        assert!(decode(say(b"<a> \x1b[2J\n")).is_none(), "escape sequence");
        assert!(decode(say(b"<a> one\n<b> two\n")).is_none(), "two lines");
        assert!(decode(say(b"<a> no newline")).is_none());
        assert!(decode(say(b"\xff\n")).is_none());
        let bad_nick = encode(
            &header(),
            &Body::Pm {
                to: "no spaces".into(),
                line: Bytes::from_static(b"x\n"),
            },
        );
        assert!(decode(bad_nick).is_none());
        let mut trailing = say(b"ok\n").to_vec();
        trailing.push(0);
        assert!(decode(Bytes::from(trailing)).is_none());
        assert!(decode(Bytes::new()).is_none());
    }

    proptest! {
        /// Any bytes, and any truncation or corruption of a valid payload: no panic.
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), cut in 0usize..200, flip in 0usize..200) {
            let _ = decode(Bytes::from(bytes));
            let good = encode(&header(), &Body::Enter {
                nick: "alice".into(),
                room: "#lobby".into(),
                notice: Bytes::from_static(b"* alice joined #lobby\n"),
            }).to_vec();
            let _ = decode(Bytes::from(good[..cut.min(good.len())].to_vec()));
            let mut flipped = good.clone();
            let i = flip % flipped.len();
            flipped[i] ^= 0xa5;
            let _ = decode(Bytes::from(flipped));
        }
    }
}
