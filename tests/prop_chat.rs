//! Property tests of the chat core against the reference model
//! (`echochat::fuzzing::Model`): random sequences of connects, lines, commands,
//! partial flushes, time steps, disconnects and shutdowns over several connections.
//! After every step each connection's bytes and close agree with the model and the
//! `ChatChecker` invariants hold (no self-delivery, per-sender order, no control
//! characters, queues within `send_queue`, nothing after a close; telnet replies
//! only when asked, refusals once). A second property
//! checks that the outputs do not depend on how each connection's bytes are chunked.
//!
//! Case counts follow proptest's defaults (256) and `PROPTEST_CASES` for long runs.

use echochat::fuzzing::{run_chat, run_chat_chunked, ChatEvent, ChatInput, Payload};
use proptest::prelude::*;

fn raw() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"hello world\n".to_vec()),
        Just(b"\n\r\n".to_vec()),
        Just(b"/nick\n".to_vec()),
        Just(b"/msg nobody hi\n".to_vec()),
        Just(b"/msg guest1\n".to_vec()),
        Just(b"/me\n".to_vec()),
        Just(b"/frob x\n".to_vec()),
        Just(b"/NICK  Bob  \n".to_vec()),
        Just(b"/join #lobby\n".to_vec()),
        Just(b"//slash\n".to_vec()),
        Just(b"bad \xff\xfe utf8\n".to_vec()),
        Just(b"esc \x1b[31m red \xc2\x9b c1 \x7f del\tTab\n".to_vec()),
        Just(b"/quit bye \x1b now\n".to_vec()),
        Just(b"partial line without end".to_vec()),
        // Telnet: Ctrl-C, option offers, subnegotiations, escaped 0xFF, floods.
        Just(b"\xff\xf4\xff\xfd\x06hello\r\n".to_vec()),
        Just(b"typo\xff\xf4".to_vec()),
        Just(b"\xff\xfb\x18\xff\xfb\x1f\xff\xfd\x01\xff\xfd\x03\xff\xfe\x01".to_vec()),
        Just(b"a\xff\xfa\x1f\x00\x50\xff\xff\x18\xff\xf0b\xff\xf1\xff\xff\n".to_vec()),
        Just(b"\xff\xfd\x06".repeat(40)),
        (0u8..=255).prop_map(|opt| vec![0xff, 0xfd, opt, 0xff, 0xfb, opt]),
        (1usize..200).prop_map(|n| {
            let mut v = vec![b'x'; n];
            v.push(b'\n');
            v
        }),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        6 => Just(Payload::Say),
        2 => Just(Payload::Me),
        2 => any::<u8>().prop_map(Payload::Msg),
        2 => any::<u8>().prop_map(Payload::Nick),
        2 => any::<u8>().prop_map(Payload::Join),
        1 => Just(Payload::Who),
        1 => Just(Payload::Rooms),
        1 => Just(Payload::Help),
        1 => prop::option::of("[a-z \\x1b]{0,8}").prop_map(Payload::Quit),
        4 => raw().prop_map(Payload::Raw),
    ]
}

fn event() -> impl Strategy<Value = ChatEvent> {
    prop_oneof![
        2 => Just(ChatEvent::Open),
        1 => any::<u8>().prop_map(ChatEvent::OpenFrom),
        10 => (0u8..8, payload(), any::<u8>()).prop_map(|(conn, payload, split)| ChatEvent::Data { conn, payload, split }),
        4 => (0u8..8, any::<u16>()).prop_map(|(conn, n)| ChatEvent::Flushed { conn, n }),
        1 => (0u8..8).prop_map(ChatEvent::PeerClosed),
        1 => (0u8..8).prop_map(ChatEvent::Reset),
        1 => (0u8..8).prop_map(ChatEvent::SocketClosed),
        2 => (0u16..200).prop_map(ChatEvent::Advance),
        1 => Just(ChatEvent::Bogus),
    ]
}

/// Limits: `(flood, per_ip, respect_reads)`.
fn controls() -> impl Strategy<Value = (Option<(u8, u8)>, Option<u8>, bool)> {
    (
        prop::option::weighted(0.3, any::<(u8, u8)>()),
        prop::option::weighted(0.3, any::<u8>()),
        any::<bool>(),
    )
}

fn input_with(reader: bool) -> impl Strategy<Value = ChatInput> {
    (
        any::<u8>(),
        // Small send queues more often: that is where pauses and drops happen.
        prop_oneof![any::<u16>(), 0u16..1024],
        prop::option::of(any::<u8>()),
        prop::option::of(any::<u8>()),
        controls(),
        prop::collection::vec(event(), 0..60),
        prop::bool::weighted(0.1),
        prop::option::weighted(0.3, any::<u8>()),
    )
        .prop_map(
            move |(
                max_line,
                send_queue,
                idle_secs,
                max_conns,
                (flood, per_ip, respect_reads),
                mut events,
                shutdown,
                quiet,
            )| {
                // Every run starts with two connections so most events hit someone.
                events.insert(0, ChatEvent::Open);
                events.insert(0, ChatEvent::Open);
                if shutdown {
                    events.push(ChatEvent::Shutdown);
                }
                ChatInput {
                    max_line,
                    send_queue,
                    idle_secs,
                    max_conns,
                    flood,
                    per_ip,
                    respect_reads: respect_reads || reader,
                    reader,
                    quiet,
                    events,
                }
            },
        )
}

fn input() -> impl Strategy<Value = ChatInput> {
    input_with(false)
}

/// Floods: few kinds of events, mostly lines (long ones too) sent many times over.
fn flood_event() -> impl Strategy<Value = ChatEvent> {
    let line = prop_oneof![
        4 => Just(Payload::Say),
        3 => Just(Payload::Me),
        3 => any::<u8>().prop_map(Payload::Msg),
        1 => any::<u8>().prop_map(Payload::Join),
        1 => Just(Payload::Who),
        1 => Just(Payload::Rooms),
        1 => Just(Payload::Help),
        2 => (1usize..400, 1usize..30).prop_map(|(len, n)| {
            let mut v = Vec::new();
            for _ in 0..n {
                v.extend(vec![b'x'; len]);
                v.push(b'\n');
            }
            Payload::Raw(v)
        }),
    ];
    prop_oneof![
        1 => Just(ChatEvent::Open),
        12 => (0u8..8, line, any::<u8>()).prop_map(|(conn, payload, split)| ChatEvent::Data { conn, payload, split }),
        3 => (0u8..8, any::<u16>()).prop_map(|(conn, n)| ChatEvent::Flushed { conn, n }),
        1 => (1u8..8).prop_map(ChatEvent::PeerClosed),
        1 => (1u8..8).prop_map(ChatEvent::Reset),
        2 => (0u16..200).prop_map(ChatEvent::Advance),
    ]
}

fn flood_input() -> impl Strategy<Value = ChatInput> {
    (
        input_with(true),
        prop::collection::vec(flood_event(), 0..80),
    )
        .prop_map(|(mut input, events)| {
            input.events.truncate(2);
            input.events.extend(std::iter::repeat_n(ChatEvent::Open, 5));
            input.events.extend(events);
            input
        })
}

proptest! {
    #[test]
    fn core_agrees_with_model(input in input()) {
        run_chat(&input);
    }

    /// No collateral drops: a reader that flushes everything after every call is
    /// never dropped for `send queue exceeded`, whatever the others send, when the
    /// driver reads only connections that `wants_read` (checked inside `run_chat`,
    /// with the model agreeing on every output and every `wants_read`).
    #[test]
    fn a_prompt_reader_is_never_dropped(input in flood_input()) {
        run_chat(&input);
    }

    #[test]
    fn outputs_do_not_depend_on_chunking(mut input in input(), sizes in prop::collection::vec(0u8..6, 1..6)) {
        // A driver that reads only while `wants_read` reads different amounts with
        // different chunkings; the core itself must not care how input was split.
        input.respect_reads = false;
        let whole = run_chat_chunked(&input, &[255]);
        let bytewise = run_chat_chunked(&input, &[1]);
        let chunked = run_chat_chunked(&input, &sizes);
        for id in whole.all_ids() {
            prop_assert_eq!(whole.received(id), chunked.received(id), "{:?} bytes differ", id);
            prop_assert_eq!(whole.received(id), bytewise.received(id), "{:?} bytes differ (1-byte reads)", id);
            prop_assert_eq!(whole.close_reason(id), chunked.close_reason(id));
            prop_assert_eq!(whole.close_reason(id), bytewise.close_reason(id));
        }
    }
}

/// Quiet rooms (`quiet_joins_above` 2, docs/PROTOCOL.md "Quiet rooms"): a fixed tour
/// of arrivals, a rename, `/join` hops and departures in rooms of 1 to 4 members.
/// The core agrees with the model on every output (checked inside `run_chat`), and
/// the first user hears only what happened while its room had at most 2 members.
#[test]
fn quiet_rooms_agree_with_the_model() {
    let data = |conn, payload| ChatEvent::Data {
        conn,
        payload,
        split: 0,
    };
    let events = vec![
        ChatEvent::Open,
        ChatEvent::Open,
        ChatEvent::Open,
        ChatEvent::Open,
        data(3, Payload::Nick(2)),    // bob, in a room of 4
        data(2, Payload::Join(8)),    // out of 4, into #rust alone
        data(1, Payload::Join(8)),    // out of 3, into #rust of 2
        data(3, Payload::Quit(None)), // bob out of 2
        data(0, Payload::Nick(0)),    // ann, alone
        ChatEvent::PeerClosed(2),
    ];
    let run = |quiet| {
        let checker = run_chat(&ChatInput {
            max_line: 200,
            send_queue: 4000,
            idle_secs: None,
            max_conns: None,
            flood: None,
            per_ip: None,
            respect_reads: false,
            reader: false,
            quiet,
            events: events.clone(),
        });
        let first = String::from_utf8_lossy(checker.received(echochat::chat::ConnId(0)));
        first.lines().skip(1).map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(
        run(Some(2)),
        [
            "* guest2 joined #lobby",
            "* bob left (quit)",
            "* guest1 is now known as ann",
        ]
    );
    assert_eq!(run(None).len(), 8, "{:?}", run(None));
    assert_eq!(run(Some(0)), run(None), "0 is off");
}
