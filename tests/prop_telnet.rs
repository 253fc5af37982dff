//! Property tests of the telnet layer (`echochat::telnet`, `docs/PROTOCOL.md`
//! "Telnet"): decoding does not depend on how the stream is chunked and matches the
//! model's byte-by-byte parser, and the chat core's outputs for a stream full of IAC
//! sequences are the same however that stream is split into reads.
//!
//! Case counts follow proptest's defaults (256) and `PROPTEST_CASES` for long runs.

use echochat::chat::{ChatConfig, ChatServer, ConnId};
use echochat::fuzzing::{check_telnet, chunk, telnet, ChatChecker};
use echochat::Instant;
use proptest::prelude::*;

/// Bytes rich in IAC, command bytes and newlines, plus whole telnet sequences.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        8 => prop::collection::vec(
            prop_oneof![
                4 => Just(0xffu8),
                6 => 0xf0u8..=0xfe,
                2 => Just(b'\n'),
                1 => Just(b'\r'),
                1 => Just(6u8),
                8 => b'a'..=b'e',
                1 => any::<u8>(),
            ],
            1..8,
        ),
        1 => Just(b"\xff\xf4\xff\xfd\x06".to_vec()),
        1 => Just(b"hello\r\n".to_vec()),
        1 => (0u8..=255).prop_map(|o| vec![0xff, 0xfd, o]),
        1 => (0u8..=255).prop_map(|o| vec![0xff, 0xfb, o]),
        1 => (0usize..5000).prop_map(|n| {
            let mut v = vec![0xff, 0xfa];
            v.extend(std::iter::repeat_n(b'q', n));
            v.extend_from_slice(b"\xff\xf0");
            v
        }),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

/// Everything each connection received and how it was closed, for a stream sent by
/// connection 0 in `chunks` (connection 1 just listens; neither reads, so small
/// `send_queue`s drop them at points that must not depend on the chunking either).
fn chat_run(
    chunks: &[&[u8]],
    send_queue: usize,
) -> Vec<(Vec<u8>, Option<echochat::chat::CloseReason>)> {
    let config = ChatConfig::default()
        .with_max_line(16)
        .with_send_queue(send_queue);
    let mut s = ChatServer::new(config);
    let mut check = ChatChecker::new(send_queue);
    let now = Instant::ZERO;
    let ids: Vec<ConnId> = (0..2)
        .map(|_| {
            let id = s.handle_open(now);
            check.opened(id);
            check.drain(&mut s);
            id
        })
        .collect();
    // Nobody reads, so queue accounting cannot depend on when flushes happen.
    for c in chunks {
        s.handle_data(now, ids[0], c).unwrap();
        check.drain(&mut s);
    }
    s.handle_peer_closed(now, ids[0]).unwrap();
    check.drain(&mut s);
    ids.iter()
        .map(|&id| (check.received(id).to_vec(), check.close_reason(id).cloned()))
        .collect()
}

proptest! {
    #[test]
    fn any_chunking_gives_the_same_events(
        data in stream(),
        sizes in prop::collection::vec(0u8..12, 1..12),
    ) {
        check_telnet(&data, &chunk(&data, &sizes));
    }

    #[test]
    fn chat_outputs_do_not_depend_on_chunking(
        data in stream(),
        sizes in prop::collection::vec(0u8..12, 1..8),
        send_queue in prop_oneof![60usize..400, Just(1 << 20)],
    ) {
        let whole = chat_run(&[&data], send_queue);
        prop_assert_eq!(&whole, &chat_run(&chunk(&data, &sizes), send_queue));
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        prop_assert_eq!(&whole, &chat_run(&bytes, send_queue));
    }

    #[test]
    fn fuzz_body_accepts_any_bytes(data in prop::collection::vec(any::<u8>(), 0..400)) {
        telnet(&data);
    }
}
