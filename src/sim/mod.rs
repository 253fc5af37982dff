//! Deterministic in-memory network simulator driving the real core and driver layer.
//!
//! [`chat::run`] plays a whole chat session from a seed: many simulated clients
//! with different behaviours (chatty room members, room hoppers, slow readers that
//! stop reading, idle clients, clients that reset, quit or send garbage) talk to a
//! real [`ChatServer`](crate::chat::ChatServer), run by the transports' real chat
//! hub and connection writers (the driver layer, `transports/driver/`) over
//! in-memory sockets, with random latency, reordering between connections (never
//! within one), random chunking of delivered bytes and random write sizes, bounded
//! socket windows, and a virtual clock. [`chat::run_flood`] floods one room to
//! check that readers who keep up are never dropped. [`echo::run`] does the same for
//! [`EchoConn`](crate::echo::EchoConn). [`cluster::run`] runs several chat cores as
//! the nodes of one cluster over a simulated bus with delays, losses and partitions.
//!
//! Everything is a function of the seed: a [`Rng`] of our own (SplitMix64),
//! ordered maps and queues only, no clock. Each run returns a [`SimReport`] whose
//! `digest` hashes every event of the run, so two runs of one seed can be compared
//! byte for byte. A broken invariant panics with a message naming it.

pub mod chat;
pub mod cluster;
pub mod echo;

use alloc::collections::BTreeMap;

/// SplitMix64: a tiny, fast, seedable PRNG (Steele, Lea and Flood), plenty for tests.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// Uniform in `lo..=hi`, as `usize`.
    pub fn urange(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as u64, hi as u64) as usize
    }

    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.next_u64() % 100 < pct
    }
}

/// FNV-1a over everything that happens in a run.
#[derive(Debug, Clone, Copy)]
pub struct Digest(u64);

impl Default for Digest {
    fn default() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }
}

impl Digest {
    /// Mixes in bytes.
    pub fn bytes(&mut self, data: &[u8]) {
        for &b in data {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Mixes in a number.
    pub fn num(&mut self, n: u64) {
        self.bytes(&n.to_le_bytes());
    }

    /// The hash so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}

/// What one simulated run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Hash of every event of the run: equal seeds give equal digests.
    pub digest: u64,
    /// Events processed.
    pub events: u64,
    /// Virtual milliseconds simulated.
    pub millis: u64,
    /// Connections opened.
    pub connections: u64,
    /// Message lines (numbered tokens) delivered to clients.
    pub delivered: u64,
    /// Tokens checked as not lost for well-behaved readers.
    pub verified: u64,
    /// Closes by reason name.
    pub closes: BTreeMap<&'static str, u64>,
    /// Bytes echoed (echo runs).
    pub echoed: u64,
    /// Calls of the chat hub's `handle_batch` (chat runs).
    pub batches: u64,
    /// Most events handled by one `handle_batch` call (chat runs).
    pub max_batch: u64,
    /// Clients whose input the core paused (flow control) with lines unprocessed:
    /// what they send and receive from then on is checked for order only, not for
    /// exactly which lines they get (their buffered `/join`s land later).
    pub paused: u64,
}

/// Timed events in order of (time, insertion): ties break by arrival, deterministically.
#[derive(Debug)]
pub struct Queue<E> {
    events: BTreeMap<(u64, u64), E>,
    seq: u64,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue {
            events: BTreeMap::new(),
            seq: 0,
        }
    }
}

impl<E> Queue<E> {
    /// Schedules `ev` at `at` (milliseconds of virtual time).
    pub fn at(&mut self, at: u64, ev: E) {
        self.seq += 1;
        self.events.insert((at, self.seq), ev);
    }

    /// The earliest event, if any, with its time.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        self.events.pop_first().map(|((t, _), e)| (t, e))
    }

    /// Time of the earliest event.
    pub fn peek_time(&self) -> Option<u64> {
        self.events.first_key_value().map(|((t, _), _)| *t)
    }
}
