//! Fuzz body for [`EchoConn`]: what comes out is what went in, within bounds.

use alloc::vec::Vec;

use crate::echo::{EchoConfig, EchoConn};

/// One step a transport may take with an [`EchoConn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoOp {
    /// `read_buf` then `handle_read(min(n, room))`.
    Read(usize),
    /// `handle_data` with `n` bytes (only some may fit).
    Data(usize),
    /// `handle_written(min(n, pending))`.
    Write(usize),
    /// The peer closed its side.
    Close,
    /// Caller misuse: must be an error and change nothing.
    Misuse,
}

/// Input: `[max_pending, initial_buffer, ops…]`, two bytes per op.
pub fn echo(data: &[u8]) {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let Some((&i, rest)) = rest.split_first() else {
        return;
    };
    let config = EchoConfig {
        max_pending: 1 + usize::from(m % 64),
        initial_buffer: 1 + usize::from(i % 16),
    };
    let ops: Vec<EchoOp> = rest
        .chunks(2)
        .map(|c| {
            let n = usize::from(*c.get(1).unwrap_or(&0));
            match c[0] % 8 {
                0 | 1 => EchoOp::Read(n),
                2 => EchoOp::Data(n),
                3..=5 => EchoOp::Write(n),
                6 => EchoOp::Misuse,
                _ => EchoOp::Close,
            }
        })
        .collect();
    check_echo(config, &ops);
}

/// Runs `ops` then drains; panics unless output == input and every bound held.
pub fn check_echo(config: EchoConfig, ops: &[EchoOp]) {
    let mut c = EchoConn::new(config);
    let max = config.max_pending.max(1);
    let mut input: Vec<u8> = Vec::new();
    let mut output: Vec<u8> = Vec::new();
    let mut closed = false;
    let byte = |k: usize| (k.wrapping_mul(31) ^ (k >> 8)) as u8;
    for op in ops {
        match *op {
            EchoOp::Read(n) => {
                let start = input.len();
                let buf = c.read_buf();
                assert_eq!(
                    buf.is_empty(),
                    closed || c_pending_full(start, &output, max),
                    "read_buf vs state"
                );
                let n = n.min(buf.len());
                for (k, b) in buf[..n].iter_mut().enumerate() {
                    *b = byte(start + k);
                }
                input.extend((start..start + n).map(byte));
                c.handle_read(n).expect("handle_read within room");
            }
            EchoOp::Data(n) => {
                let start = input.len();
                let data: Vec<u8> = (start..start + n).map(byte).collect();
                match c.handle_data(&data) {
                    Ok(taken) => {
                        input.extend_from_slice(&data[..taken]);
                        assert!(
                            taken == n || c.pending() == max,
                            "handle_data stopped early with room left"
                        );
                    }
                    Err(_) => assert!(closed && n > 0, "handle_data failed on an open connection"),
                }
            }
            EchoOp::Write(n) => {
                let n = n.min(c.pending());
                if n > 0 {
                    let p = c
                        .poll_transmit()
                        .expect("pending bytes but nothing to transmit");
                    output.extend_from_slice(&p[..n]);
                }
                c.handle_written(n).expect("handle_written within pending");
            }
            EchoOp::Close => {
                c.handle_peer_closed();
                closed = true;
            }
            EchoOp::Misuse => {
                let pending = c.pending();
                assert!(
                    c.handle_written(pending + 1).is_err(),
                    "over-write accepted"
                );
                assert_eq!(c.pending(), pending, "misuse changed state");
            }
        }
        check_state(&c, max, closed, &input, &output);
    }
    c.handle_peer_closed();
    while let Some(p) = c.poll_transmit() {
        let p = p.to_vec();
        output.extend_from_slice(&p);
        c.handle_written(p.len()).expect("write all pending");
    }
    assert!(
        c.poll_close(),
        "drained and closed, but poll_close is false"
    );
    assert_eq!(output, input, "echo output differs from input");
}

fn c_pending_full(input_len: usize, output: &[u8], max: usize) -> bool {
    input_len - output.len() >= max
}

fn check_state(c: &EchoConn, max: usize, closed: bool, input: &[u8], output: &[u8]) {
    assert!(
        c.pending() <= max,
        "pending {} > max_pending {max}",
        c.pending()
    );
    assert!(
        c.buffer_capacity() <= max,
        "buffer {} > max_pending {max}",
        c.buffer_capacity()
    );
    assert_eq!(
        c.pending(),
        input.len() - output.len(),
        "pending != received - written"
    );
    assert_eq!(c.received(), input.len() as u64);
    assert_eq!(
        c.wants_read(),
        !closed && c.pending() < max,
        "wants_read must be false exactly when full or closed"
    );
    assert_eq!(c.poll_close(), closed && c.pending() == 0);
    assert_eq!(
        output,
        &input[..output.len()],
        "echoed bytes differ from the input"
    );
    if let Some(p) = c.poll_transmit() {
        assert_eq!(
            p,
            &input[output.len()..],
            "pending bytes differ from the unechoed input"
        );
    }
}
