//! [`FlushMap`]: converts ciphertext bytes written to a socket into plaintext bytes
//! flushed, for cores that count what they queued in plaintext.

use std::collections::VecDeque;

/// Maps ciphertext written by the driver back to the plaintext it carries.
///
/// Every chunk of ciphertext the TLS layer produces is recorded, in order, as
/// `(ciphertext_len, plaintext_len)`: the records encrypting one piece of
/// plaintext carry its length, handshake messages and alerts carry 0. When the
/// driver reports `n` ciphertext bytes written ([`written`](Self::written)), the
/// plaintext of every chunk that is now **completely** written counts as flushed;
/// a chunk written only in part counts nothing until its last byte is written.
///
/// So the plaintext reported flushed never runs ahead of the socket, is reported
/// exactly once, and adds up to everything encrypted once every ciphertext byte
/// has been written.
#[derive(Debug, Default, Clone)]
pub struct FlushMap {
    /// `(ciphertext bytes not yet written, plaintext it carries)`, oldest first.
    chunks: VecDeque<(usize, usize)>,
    /// Sum of the first fields.
    unwritten: usize,
}

impl FlushMap {
    /// An empty map.
    pub fn new() -> Self {
        FlushMap::default()
    }

    /// Records a chunk of `ciphertext` bytes (just produced, to be written after
    /// every chunk recorded before) carrying `plaintext` bytes.
    pub fn push(&mut self, ciphertext: usize, plaintext: usize) {
        if ciphertext == 0 && plaintext == 0 {
            return;
        }
        self.unwritten += ciphertext;
        // Chunks without plaintext merge with a previous one of the same kind.
        if plaintext == 0 {
            if let Some(last) = self.chunks.back_mut() {
                if last.1 == 0 {
                    last.0 += ciphertext;
                    return;
                }
            }
        }
        self.chunks.push_back((ciphertext, plaintext));
    }

    /// `n` more ciphertext bytes were written; returns the plaintext bytes this
    /// completes. Reporting more than [`unwritten`](Self::unwritten) is a driver
    /// bug; the excess is ignored.
    pub fn written(&mut self, mut n: usize) -> usize {
        debug_assert!(
            n <= self.unwritten,
            "{n} ciphertext bytes reported written, {} were pending",
            self.unwritten
        );
        n = n.min(self.unwritten);
        self.unwritten -= n;
        let mut plaintext = 0;
        while let Some(front) = self.chunks.front_mut() {
            if front.0 > n {
                front.0 -= n;
                break;
            }
            n -= front.0;
            plaintext += front.1;
            self.chunks.pop_front();
        }
        plaintext
    }

    /// Ciphertext bytes recorded and not yet reported written.
    pub fn unwritten(&self) -> usize {
        self.unwritten
    }

    /// Plaintext bytes recorded and not yet reported flushed.
    pub fn unflushed_plaintext(&self) -> usize {
        self.chunks.iter().map(|c| c.1).sum()
    }

    /// Whether every recorded byte has been reported written.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::FlushMap;

    #[test]
    fn whole_chunks_count_when_their_last_byte_is_written() {
        let mut m = FlushMap::new();
        m.push(100, 0); // handshake
        m.push(40, 18); // a record of 18 plaintext bytes
        m.push(30, 8);
        assert_eq!(m.unwritten(), 170);
        assert_eq!(m.unflushed_plaintext(), 26);
        assert_eq!(m.written(99), 0);
        assert_eq!(m.written(1), 0, "handshake bytes carry no plaintext");
        assert_eq!(m.written(39), 0, "a partly written record counts nothing");
        assert_eq!(m.written(1), 18);
        assert_eq!(m.written(30), 8);
        assert!(m.is_empty());
        assert_eq!(m.written(0), 0);
    }

    #[test]
    fn one_report_can_complete_several_chunks() {
        let mut m = FlushMap::new();
        m.push(10, 5);
        m.push(0, 0); // ignored
        m.push(7, 0); // alert
        m.push(10, 5);
        assert_eq!(m.written(25), 5);
        assert_eq!(m.written(2), 5);
        assert_eq!(m.unwritten(), 0);
    }

    #[test]
    fn zero_plaintext_chunks_merge() {
        let mut m = FlushMap::new();
        m.push(5, 0);
        m.push(6, 0);
        assert_eq!(m.chunks.len(), 1);
        m.push(3, 3);
        m.push(2, 0);
        m.push(2, 0);
        assert_eq!(m.chunks.len(), 3);
        assert_eq!(m.written(15), 3);
        assert_eq!(m.written(3), 0);
        assert!(m.is_empty());
    }

    #[test]
    fn totals_agree_for_any_split() {
        let sizes = [
            (29usize, 7usize),
            (5, 0),
            (16406, 16384),
            (1, 0),
            (300, 277),
        ];
        for step in [1usize, 2, 3, 7, 1000, 17000, 100_000] {
            let mut m = FlushMap::new();
            for (c, p) in sizes {
                m.push(c, p);
            }
            let total: usize = sizes.iter().map(|s| s.0).sum();
            let (mut done, mut plain) = (0, 0);
            while done < total {
                let n = step.min(total - done);
                plain += m.written(n);
                done += n;
                assert!(plain <= 7 + 16384 + 277);
            }
            assert_eq!(plain, 7 + 16384 + 277, "step {step}");
        }
    }
}
