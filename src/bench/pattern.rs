//! A deterministic byte pattern per connection, so every echoed byte can be checked
//! without keeping what was sent.

/// Longest slice [`Pattern::at`] returns.
pub const MAX_CHUNK: usize = 64 * 1024;
/// The pattern repeats every `PERIOD` bytes (a prime, so it does not line up with
/// power-of-two read or write sizes).
const PERIOD: usize = 65_537;

/// A connection's byte stream: byte `i` is `buf[i % PERIOD]`.
pub struct Pattern {
    buf: Vec<u8>,
}

impl Pattern {
    /// The pattern of connection `seed` (xorshift64*, seeded per connection).
    pub fn new(seed: u64) -> Pattern {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut buf: Vec<u8> = (0..PERIOD)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect();
        buf.extend_from_within(..MAX_CHUNK);
        Pattern { buf }
    }

    /// The `len` bytes at stream offset `offset` (`len` at most [`MAX_CHUNK`]).
    pub fn at(&self, offset: u64, len: usize) -> &[u8] {
        let start = (offset % PERIOD as u64) as usize;
        &self.buf[start..start + len.min(MAX_CHUNK)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_are_continuous_across_the_period() {
        let p = Pattern::new(7);
        let whole: Vec<u8> = (0..4 * PERIOD as u64).map(|i| p.at(i, 1)[0]).collect();
        for offset in [0u64, 1, PERIOD as u64 - 5, 2 * PERIOD as u64 + 3] {
            let len = MAX_CHUNK;
            assert_eq!(
                p.at(offset, len),
                &whole[offset as usize..offset as usize + len]
            );
        }
        assert_ne!(Pattern::new(8).at(0, 64), p.at(0, 64), "connections differ");
    }
}
