//! `EchoConn` throughput: the read_buf → handle_read → poll_transmit → handle_written
//! cycle a transport runs, 16 KiB at a time, with the "socket" reduced to a memcpy.
//!
//! Run: `cargo bench --bench echo_core` (add `-- --quick` for a fast pass).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use echochat::echo::{EchoConfig, EchoConn};

const CHUNK: usize = 16 * 1024;

fn echo_core(c: &mut Criterion) {
    let source: Vec<u8> = (0..CHUNK).map(|i| (i * 7 + 3) as u8).collect();
    let mut group = c.benchmark_group("echo_core");
    group.throughput(Throughput::Bytes(CHUNK as u64));
    group.bench_function("cycle_16KiB", |b| {
        let mut conn = EchoConn::new(EchoConfig::default());
        b.iter(|| {
            let mut fed = 0;
            while fed < CHUNK {
                let buf = conn.read_buf();
                let n = buf.len().min(CHUNK - fed);
                buf[..n].copy_from_slice(&source[fed..fed + n]);
                conn.handle_read(n).expect("read fits");
                fed += n;
                let out = conn.poll_transmit().expect("pending bytes");
                let written = black_box(out).len();
                conn.handle_written(written).expect("written fits");
            }
        })
    });
    group.finish();
}

criterion_group!(benches, echo_core);
criterion_main!(benches);
