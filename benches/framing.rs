//! `LineFramer` throughput on short (16 B) and long (1000 B) lines, against the
//! ceiling of a bare `memchr::memchr_iter` newline count over the same bytes.
//!
//! Run: `cargo bench --bench framing` (add `-- --quick` for a fast pass).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use echochat::framing::LineFramer;

/// About 256 KiB of `line_len`-byte lines (newline included), fed in 16 KiB reads.
fn input(line_len: usize) -> Vec<u8> {
    let mut line: Vec<u8> = (0..line_len - 1).map(|i| b'a' + (i % 26) as u8).collect();
    line.push(b'\n');
    line.iter()
        .copied()
        .cycle()
        .take((256 * 1024 / line_len) * line_len)
        .collect()
}

const READ: usize = 16 * 1024;

fn framing(c: &mut Criterion) {
    let mut group = c.benchmark_group("framing");
    for line_len in [16usize, 1000] {
        let data = input(line_len);
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("line_framer", line_len),
            &data,
            |b, data| {
                b.iter(|| {
                    let mut framer = LineFramer::new(1024);
                    let mut lines = 0usize;
                    for chunk in data.chunks(READ) {
                        framer.push(chunk);
                        while let Some(line) = framer.next_line() {
                            lines += black_box(line).map_or(0, |_| 1);
                        }
                    }
                    assert_eq!(lines, data.len() / line_len);
                    lines
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("memchr_ceiling", line_len),
            &data,
            |b, data| {
                b.iter(|| {
                    let lines: usize = data
                        .chunks(READ)
                        .map(|chunk| memchr::memchr_iter(b'\n', black_box(chunk)).count())
                        .sum();
                    assert_eq!(lines, data.len() / line_len);
                    lines
                })
            },
        );
        // A bare `.count()` is vectorised inside memchr; visiting every position is
        // the ceiling for any framer that does something per line.
        group.bench_with_input(
            BenchmarkId::new("memchr_visit_each", line_len),
            &data,
            |b, data| {
                b.iter(|| {
                    data.chunks(READ)
                        .map(|chunk| {
                            memchr::memchr_iter(b'\n', black_box(chunk))
                                .fold(0usize, |acc, i| acc ^ black_box(i))
                        })
                        .fold(0usize, |a, b| a ^ b)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, framing);
criterion_main!(benches);
