//! Fuzz body for the cluster rules (docs/cluster.md): one chat core that is a node
//! of a cluster takes arbitrary bus payloads (peer input: another node, or anyone
//! who can publish on the bus), claim answers, bus losses and restorations, local
//! users' lines and the passing of time, in any order. Checks: nothing panics; a
//! payload that decodes re-encodes to itself; every payload this node publishes
//! decodes; every transmit is whole lines; outputs stay bounded.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::time::Duration;

use bytes::Bytes;

use crate::chat::cluster::wire;
use crate::chat::cluster::ClusterConfig;
use crate::chat::{ChatConfig, ChatServer, ConnId, Output};
use crate::cluster::{BusAction, BusEvent};
use crate::Instant;

/// Fuzz entry point: records `[op, len, len bytes]` until the data runs out.
pub fn cluster(data: &[u8]) {
    let config = ChatConfig::default().with_max_line(256);
    let mut s = ChatServer::with_cluster(config, ClusterConfig::new("fuzz", 1));
    let mut now = Instant::ZERO;
    let mut claims: VecDeque<u64> = VecDeque::new();
    let mut conns: Vec<ConnId> = Vec::new();
    s.handle_bus(now, BusEvent::Restored);
    for _ in 0..3 {
        conns.push(s.handle_open(now));
    }
    drain(&mut s, &mut claims, now);
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        match op % 8 {
            // Anything at all, as a payload on the cluster's topic.
            0 | 1 => {
                let payload = Bytes::copy_from_slice(bytes);
                if let Some((h, b)) = wire::decode(payload.clone()) {
                    let again = wire::encode(&h, &b);
                    assert_eq!(wire::decode(again), Some((h, b)), "re-encoding changed it");
                }
                s.handle_bus(
                    now,
                    BusEvent::Message {
                        topic: "echochat".into(),
                        payload,
                    },
                );
            }
            // Answer the oldest claim (won or lost), or an unknown one.
            2 => {
                let token = claims.pop_front().unwrap_or(u64::from(len as u32) << 20);
                s.handle_bus(
                    now,
                    BusEvent::Claimed {
                        token,
                        won: op & 0x10 == 0,
                    },
                );
            }
            3 => s.handle_bus(now, BusEvent::Lost),
            4 => s.handle_bus(now, BusEvent::Restored),
            // A local user's bytes (commands included).
            5 | 6 => {
                let id = conns[usize::from(*op >> 4) % conns.len()];
                let _ = s.handle_data(now, id, bytes);
            }
            // Time passes (up to ~65 s).
            _ => {
                let ms = bytes
                    .iter()
                    .fold(0u64, |a, &b| (a << 8 | u64::from(b)) & 0xffff);
                now = now + Duration::from_millis(ms);
                s.handle_timeout(now);
            }
        }
        drain(&mut s, &mut claims, now);
    }
}

fn drain(s: &mut ChatServer, claims: &mut VecDeque<u64>, now: Instant) {
    let mut n = 0;
    while let Some(out) = s.poll_output() {
        n += 1;
        assert!(n < 100_000, "unbounded outputs");
        match out {
            Output::Transmit { to, bytes } => {
                assert!(
                    bytes.ends_with(b"\n") || bytes.len() == 3,
                    "not whole lines"
                );
                let _ = s.handle_flushed(to, bytes.len());
            }
            Output::Close { id, .. } | Output::Abort { id } => {
                let _ = s.handle_closed(now, id);
            }
            Output::Bus(BusAction::Publish { payload, .. }) => {
                assert!(
                    wire::decode(payload).is_some(),
                    "published an undecodable payload"
                );
            }
            Output::Bus(BusAction::Claim { token, .. }) => {
                if claims.len() < 64 {
                    claims.push_back(token);
                }
            }
            Output::Bus(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload this node publishes, as a record the body feeds back in.
    #[test]
    fn a_published_payload_is_a_valid_input() {
        let mut s = ChatServer::with_cluster(ChatConfig::default(), ClusterConfig::new("seed", 7));
        s.handle_bus(Instant::ZERO, BusEvent::Restored);
        let id = s.handle_open(Instant::ZERO);
        let _ = s.handle_data(Instant::ZERO, id, b"hello\n");
        let mut payloads = Vec::new();
        while let Some(out) = s.poll_output() {
            if let Output::Bus(BusAction::Publish { payload, .. }) = out {
                payloads.push(payload);
            }
        }
        assert!(!payloads.is_empty());
        for p in payloads.iter().filter(|p| p.len() < 256) {
            let mut record = alloc::vec![0u8, p.len() as u8];
            record.extend_from_slice(p);
            cluster(&record);
            if std::env::var_os("ECHOCHAT_PRINT_SEEDS").is_some() {
                std::println!(
                    "{}",
                    record
                        .iter()
                        .map(|b| alloc::format!("{b:02x}"))
                        .collect::<String>()
                );
            }
        }
    }
}
