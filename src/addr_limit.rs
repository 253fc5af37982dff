//! [`AddrLimit`]: how many connections each client address holds, and whether one
//! more is allowed (`--max-conns-per-ip`, loopback exempt unless
//! `--no-loopback-exempt`; README, "Limits and abuse"). Shared by the chat and
//! echo cores; pure bookkeeping, no I/O.

use alloc::collections::BTreeMap;
use core::net::IpAddr;

use crate::chat::ConnId;

/// Connections per address, for a per-address limit.
#[derive(Debug, Clone, Default)]
pub(crate) struct AddrLimit {
    /// Most connections per address (`None`: no limit).
    max: Option<usize>,
    loopback_exempt: bool,
    /// The address of every connection counted (canonical form).
    addrs: BTreeMap<ConnId, IpAddr>,
    /// How many of those each address has.
    per_ip: BTreeMap<IpAddr, usize>,
}

impl AddrLimit {
    /// A limit of `max` per address (`None` or `Some(0)`: none).
    pub(crate) fn new(max: Option<usize>, loopback_exempt: bool) -> Self {
        AddrLimit {
            max: max.filter(|&m| m > 0),
            loopback_exempt,
            ..AddrLimit::default()
        }
    }

    /// Whether `peer` already holds as many connections as allowed.
    pub(crate) fn is_full(&self, peer: IpAddr) -> bool {
        let ip = peer.to_canonical();
        let exempt = self.loopback_exempt && ip.is_loopback();
        self.max
            .is_some_and(|max| !exempt && self.per_ip.get(&ip).copied().unwrap_or(0) >= max)
    }

    /// Counts `id` against `peer` until [`forget`](Self::forget).
    pub(crate) fn count(&mut self, id: ConnId, peer: IpAddr) {
        let ip = peer.to_canonical();
        self.addrs.insert(id, ip);
        *self.per_ip.entry(ip).or_default() += 1;
    }

    /// `id` no longer counts (unknown ids are ignored).
    pub(crate) fn forget(&mut self, id: ConnId) {
        let Some(ip) = self.addrs.remove(&id) else {
            return;
        };
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn counts_per_address_and_gives_slots_back() {
        let mut l = AddrLimit::new(Some(2), true);
        assert!(!l.is_full(A));
        l.count(ConnId(0), A);
        l.count(ConnId(1), A);
        assert!(l.is_full(A));
        // The IPv4-mapped IPv6 form is the same address.
        assert!(l.is_full(IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped())));
        assert!(!l.is_full(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))));
        l.forget(ConnId(0));
        l.forget(ConnId(0));
        assert!(!l.is_full(A));
    }

    #[test]
    fn loopback_is_exempt_unless_told_otherwise() {
        let lo = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let mut exempt = AddrLimit::new(Some(1), true);
        let mut strict = AddrLimit::new(Some(1), false);
        for l in [&mut exempt, &mut strict] {
            l.count(ConnId(0), lo);
            l.count(ConnId(1), IpAddr::V6(Ipv6Addr::LOCALHOST));
        }
        assert!(!exempt.is_full(lo) && !exempt.is_full(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert!(strict.is_full(lo) && strict.is_full(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert!(!AddrLimit::new(Some(0), false).is_full(A), "0 is no limit");
    }
}
