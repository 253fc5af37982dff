//! Cost of one chat message broadcast to a room of 10, 100 and 1000 members:
//! `handle_data` from one member, then drain `poll_output` and report every
//! transmit flushed (so queues stay empty). Throughput is in recipients.
//!
//! Run: `cargo bench --bench chat_broadcast` (add `-- --quick` for a fast pass).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use echochat::chat::{ChatConfig, ChatServer, ConnId, Output};
use echochat::Instant;

/// Drains every output, reporting transmits as flushed; returns how many transmits.
fn drain(server: &mut ChatServer) -> usize {
    let mut transmits = 0;
    while let Some(out) = server.poll_output() {
        if let Output::Transmit { to, bytes } = out {
            server
                .handle_flushed(to, bytes.len())
                .expect("flushed what was queued");
            transmits += 1;
        }
    }
    transmits
}

fn room(members: usize) -> (ChatServer, ConnId) {
    let mut server = ChatServer::new(ChatConfig::default());
    let ids: Vec<ConnId> = (0..members)
        .map(|_| {
            let id = server.handle_open(Instant::ZERO);
            drain(&mut server);
            id
        })
        .collect();
    (server, ids[0])
}

fn chat_broadcast(c: &mut Criterion) {
    let line = b"hello everyone, this is a benchmark line of about 64 bytes....\n";
    let mut group = c.benchmark_group("chat_broadcast");
    for members in [10usize, 100, 1000] {
        let (mut server, sender) = room(members);
        group.throughput(Throughput::Elements(members as u64 - 1));
        group.bench_function(BenchmarkId::from_parameter(members), |b| {
            b.iter(|| {
                server
                    .handle_data(Instant::ZERO, sender, black_box(line))
                    .expect("sender is open");
                let n = drain(&mut server);
                debug_assert_eq!(n, members - 1);
                n
            })
        });
    }
    group.finish();
}

criterion_group!(benches, chat_broadcast);
criterion_main!(benches);
