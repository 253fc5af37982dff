//! Property tests: [`LineFramer`](echochat::framing::LineFramer) output does not
//! depend on how the stream is chunked, and matches a split-on-`\n` reference.
//!
//! Case counts follow proptest's defaults (256) and `PROPTEST_CASES` for long runs.

use echochat::fuzzing::{check_framer, chunk, framer};
use proptest::prelude::*;

/// Bytes rich in `\n`, `\r` and repeats, so lines of every length show up.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![4 => Just(b'\n'), 2 => Just(b'\r'), 10 => b'a'..=b'e', 1 => any::<u8>()],
        0..300,
    )
}

proptest! {
    #[test]
    fn any_chunking_gives_the_same_lines(
        max in 0usize..40,
        data in stream(),
        sizes in prop::collection::vec(0u8..20, 1..12),
    ) {
        check_framer(max, &data, &chunk(&data, &sizes));
    }

    #[test]
    fn one_byte_reads_give_the_same_lines(max in 0usize..40, data in stream()) {
        check_framer(max, &data, &chunk(&data, &[1]));
    }

    #[test]
    fn fuzz_body_accepts_any_bytes(data in prop::collection::vec(any::<u8>(), 0..400)) {
        framer(&data);
    }
}
