//! Property tests of the sans-IO TLS layer (`echochat::tls::TlsServerLayer`):
//! however the client's ciphertext is cut into reads (handshake included), and
//! however little the core reads at a time, the core gets exactly the client's
//! plaintext; however the server's ciphertext is written, the plaintext reported
//! flushed adds up to what was written, never running ahead.
#![cfg(feature = "tls")]

use echochat::fuzzing::TlsPair;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_split_of_the_ciphertext_gives_the_same_plaintext(
        tls12 in any::<bool>(),
        messages in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 1..6),
        splits in prop::collection::vec(1usize..2000, 1..20),
        reads in prop::collection::vec(1usize..5000, 1..10),
    ) {
        let mut p = TlsPair::new(tls12);
        p.server_reads = false;
        let mut sent = Vec::new();
        for m in &messages {
            p.client_write(m);
            sent.extend_from_slice(m);
        }
        let mut k = 0;
        let mut stuck = 0;
        while p.server_got.len() < sent.len() {
            p.client_output();
            let taken = p.deliver_to_server(splits[k % splits.len()]);
            p.server_read(reads[k % reads.len()]);
            p.deliver_to_client(usize::MAX);
            prop_assert!(p.server_error.is_none(), "{:?}", p.server_error);
            prop_assert!(p.server.plaintext_pending() <= 48 * 1024);
            stuck = if taken == 0 { stuck + 1 } else { 0 };
            prop_assert!(stuck < 1000, "no progress");
            k += 1;
        }
        prop_assert_eq!(&p.server_got, &sent);
    }

    #[test]
    fn any_split_of_the_writes_reports_every_plaintext_byte_once(
        tls12 in any::<bool>(),
        pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..20_000), 1..6),
        writes in prop::collection::vec(1usize..9000, 1..20),
    ) {
        let mut p = TlsPair::new(tls12);
        // Some before the handshake (held), the rest after.
        let (early, late) = pieces.split_at(pieces.len() / 2);
        let mut total = 0;
        for m in early {
            prop_assert_eq!(p.server_write(m), m.len());
            total += m.len();
        }
        p.handshake();
        let mut k = 0;
        for m in late {
            let mut at = 0;
            while at < m.len() {
                at += p.server_write(&m[at..]);
                p.deliver_to_client(writes[k % writes.len()]);
                prop_assert!(p.flushed <= total + at);
                k += 1;
            }
            total += m.len();
        }
        while !p.to_client.is_empty() {
            p.deliver_to_client(writes[k % writes.len()]);
            k += 1;
        }
        prop_assert_eq!(p.flushed, total);
        prop_assert_eq!(p.client_got, pieces.concat());
    }
}
