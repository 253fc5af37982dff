//! Property tests: [`EchoConn`](echochat::echo::EchoConn) gives back exactly what it
//! got, whatever the read and write sizes, and stays within its bounds
//! (`pending() <= max_pending`; `wants_read()` false exactly when full or closed).
//!
//! Case counts follow proptest's defaults (256) and `PROPTEST_CASES` for long runs.

use echochat::echo::EchoConfig;
use echochat::fuzzing::{check_echo, echo, EchoOp};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = EchoOp> {
    prop_oneof![
        4 => (0usize..80).prop_map(EchoOp::Read),
        3 => (0usize..80).prop_map(EchoOp::Data),
        5 => (0usize..80).prop_map(EchoOp::Write),
        1 => Just(EchoOp::Misuse),
        1 => Just(EchoOp::Close),
    ]
}

proptest! {
    #[test]
    fn output_is_input_within_bounds(
        max_pending in 1usize..70,
        initial in 1usize..20,
        ops in prop::collection::vec(op(), 0..120),
    ) {
        let mut config = EchoConfig::with_max_pending(max_pending);
        config.initial_buffer = initial;
        check_echo(config, &ops);
    }

    #[test]
    fn fuzz_body_accepts_any_bytes(data in prop::collection::vec(any::<u8>(), 0..400)) {
        echo(&data);
    }
}
