//! Line framing: turns a byte stream, chunked any way, into lines.
//!
//! [`LineFramer`] is the chat service's framer (like tokio-util's
//! `LinesCodec::new_with_max_length`, without a runtime): lines end in `\n`, a `\r`
//! just before it is dropped, a line whose content exceeds `max_line` bytes is
//! reported once as [`LineTooLong`] and discarded up to its `\n`, and framing resumes
//! with the next line. Bytes already scanned are never scanned again, and the
//! buffer never holds more than `max_line + 1` bytes of an unfinished line (plus the
//! unread part of the last chunk pushed).
//!
//! ```
//! use echochat::framing::LineFramer;
//! let mut f = LineFramer::new(8);
//! f.push(b"hel");
//! assert!(f.next_line().is_none());
//! f.push(b"lo\r\nway too long line\nok\n");
//! assert_eq!(&f.next_line().unwrap().unwrap()[..], b"hello");
//! assert!(f.next_line().unwrap().is_err());
//! assert_eq!(&f.next_line().unwrap().unwrap()[..], b"ok");
//! assert!(f.next_line().is_none());
//! ```

use bytes::{Bytes, BytesMut};

/// A line exceeded the framer's maximum length; it was discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("line too long (max {max} bytes)")]
pub struct LineTooLong {
    /// The limit that was exceeded.
    pub max: usize,
}

/// Splits a byte stream into `\n`-terminated lines with a length limit.
#[derive(Debug)]
pub struct LineFramer {
    buf: BytesMut,
    /// Bytes of `buf` already searched for `\n`.
    scanned: usize,
    max_line: usize,
    /// Inside a too-long line (already reported): drop bytes up to the next `\n`.
    discarding: bool,
}

impl LineFramer {
    /// A framer accepting lines of at most `max_line` bytes (not counting `\r\n`).
    pub fn new(max_line: usize) -> Self {
        LineFramer {
            buf: BytesMut::new(),
            scanned: 0,
            max_line,
            discarding: false,
        }
    }

    /// The length limit.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Appends bytes received from the peer. Drain [`next_line`](Self::next_line)
    /// until `None` after each push to keep the buffer bounded.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes held for lines not yet complete (or not yet taken).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete line without its `\r\n` / `\n`, an error for a line that was
    /// too long, or `None` when more bytes are needed.
    pub fn next_line(&mut self) -> Option<Result<Bytes, LineTooLong>> {
        loop {
            match memchr::memchr(b'\n', &self.buf[self.scanned..]) {
                Some(i) => {
                    let end = self.scanned + i;
                    let line = self.buf.split_to(end + 1).freeze();
                    self.scanned = 0;
                    if core::mem::take(&mut self.discarding) {
                        continue;
                    }
                    return Some(self.check(line.slice(..end)));
                }
                None => {
                    if self.discarding {
                        self.buf.clear();
                        self.scanned = 0;
                        return None;
                    }
                    self.scanned = self.buf.len();
                    // `max_line` content bytes plus a possible `\r` may still be fine.
                    if self.buf.len() > self.max_line.saturating_add(1) {
                        self.buf.clear();
                        self.scanned = 0;
                        self.discarding = true;
                        return Some(Err(LineTooLong { max: self.max_line }));
                    }
                    return None;
                }
            }
        }
    }

    /// Forgets the unfinished line (the bytes after the last `\n` pushed), including
    /// a too-long line being skipped: the next byte pushed starts a new line. Complete
    /// lines not yet taken with [`next_line`](Self::next_line) are kept. (The chat
    /// core calls this for telnet's `IAC IP`, Ctrl-C.)
    pub fn discard_partial(&mut self) {
        match memchr::memrchr(b'\n', &self.buf) {
            Some(i) => {
                self.buf.truncate(i + 1);
                self.scanned = self.scanned.min(self.buf.len());
            }
            None => {
                self.buf.clear();
                self.scanned = 0;
                self.discarding = false;
            }
        }
    }

    /// At end of stream: the last, unterminated line if there is one.
    pub fn finish(&mut self) -> Option<Result<Bytes, LineTooLong>> {
        let rest = self.buf.split().freeze();
        self.scanned = 0;
        if core::mem::take(&mut self.discarding) || rest.is_empty() {
            return None;
        }
        Some(self.check(rest))
    }

    fn check(&self, mut line: Bytes) -> Result<Bytes, LineTooLong> {
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        if line.len() > self.max_line {
            Err(LineTooLong { max: self.max_line })
        } else {
            Ok(line)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn all(f: &mut LineFramer) -> Vec<Result<Vec<u8>, LineTooLong>> {
        core::iter::from_fn(|| f.next_line())
            .map(|r| r.map(|b| b.to_vec()))
            .collect()
    }

    #[test]
    fn many_lines_in_one_push() {
        let mut f = LineFramer::new(10);
        f.push(b"a\nbb\r\n\nccc\n");
        assert_eq!(
            all(&mut f),
            [
                Ok(b"a".to_vec()),
                Ok(b"bb".to_vec()),
                Ok(b"".to_vec()),
                Ok(b"ccc".to_vec())
            ]
        );
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn one_line_over_many_pushes() {
        let mut f = LineFramer::new(10);
        for b in b"hello world\n".chunks(1) {
            assert!(all(&mut f).is_empty());
            f.push(b);
        }
        assert_eq!(all(&mut f), [Err(LineTooLong { max: 10 })]);
        f.push(b"0123456789\r\n");
        assert_eq!(all(&mut f), [Ok(b"0123456789".to_vec())]);
    }

    #[test]
    fn too_long_line_is_reported_once_and_discarded() {
        let mut f = LineFramer::new(4);
        f.push(b"abcdefgh");
        assert_eq!(all(&mut f), [Err(LineTooLong { max: 4 })]);
        f.push(b"ijklmnop");
        assert!(all(&mut f).is_empty());
        assert_eq!(f.buffered(), 0, "discarded bytes are not kept");
        f.push(b"q\nok\n");
        assert_eq!(all(&mut f), [Ok(b"ok".to_vec())]);
    }

    #[test]
    fn exact_limit_with_crlf_is_fine() {
        let mut f = LineFramer::new(3);
        f.push(b"abc\r");
        assert!(all(&mut f).is_empty());
        f.push(b"\n");
        assert_eq!(all(&mut f), [Ok(b"abc".to_vec())]);
    }

    #[test]
    fn finish_returns_unterminated_tail() {
        let mut f = LineFramer::new(8);
        f.push(b"x\ntail");
        assert_eq!(all(&mut f), [Ok(b"x".to_vec())]);
        assert_eq!(f.finish().unwrap().unwrap(), &b"tail"[..]);
        assert!(f.finish().is_none());
    }

    #[test]
    fn discard_partial_forgets_only_the_unfinished_line() {
        let mut f = LineFramer::new(8);
        f.push(
            b"one
tw",
        );
        f.discard_partial();
        f.push(
            b"two
",
        );
        assert_eq!(all(&mut f), [Ok(b"one".to_vec()), Ok(b"two".to_vec())]);
        f.push(b"half");
        assert!(all(&mut f).is_empty());
        f.discard_partial();
        assert_eq!(f.buffered(), 0);
        assert!(f.finish().is_none());
        f.push(
            b"x
",
        );
        assert_eq!(all(&mut f), [Ok(b"x".to_vec())]);
    }

    #[test]
    fn discard_partial_ends_a_too_long_line() {
        let mut f = LineFramer::new(4);
        f.push(b"abcdefgh");
        assert_eq!(all(&mut f), [Err(LineTooLong { max: 4 })]);
        f.discard_partial();
        f.push(
            b"ok
",
        );
        assert_eq!(
            all(&mut f),
            [Ok(b"ok".to_vec())],
            "a new line after the discard"
        );
    }

    #[test]
    fn buffer_stays_bounded_without_newlines() {
        let mut f = LineFramer::new(16);
        for _ in 0..1000 {
            f.push(&[b'x'; 7]);
            while f.next_line().is_some() {}
            assert!(f.buffered() <= 17 + 7);
        }
    }
}
