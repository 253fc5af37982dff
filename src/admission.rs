//! Connection admission: the `--max-conns` decision, shared by every transport.
//!
//! An [`Admission`] counts live connections. A transport asks it on every accept;
//! a refused connection is closed at once and the server carries on. The count is
//! atomic so thread-per-connection and task-per-connection transports can share one.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Counts live connections against an optional maximum.
#[derive(Debug)]
pub struct Admission {
    live: AtomicUsize,
    max: Option<usize>,
}

/// Proof that a connection was admitted; dropping it frees the slot.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
}

impl Admission {
    /// At most `max` live connections (`None`: no limit).
    pub fn new(max: Option<usize>) -> Arc<Self> {
        Arc::new(Admission {
            live: AtomicUsize::new(0),
            max,
        })
    }

    /// Admits one more connection, or `None` if the limit is reached.
    pub fn try_admit(self: &Arc<Self>) -> Option<Permit> {
        let max = self.max.unwrap_or(usize::MAX);
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Permit {
                admission: Arc::clone(self),
            })
    }

    /// Connections admitted and not yet released.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.live.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_hit_and_released() {
        let a = Admission::new(Some(2));
        let p1 = a.try_admit().unwrap();
        let _p2 = a.try_admit().unwrap();
        assert!(a.try_admit().is_none());
        assert_eq!(a.live(), 2);
        drop(p1);
        assert!(a.try_admit().is_some());
    }

    #[test]
    fn no_limit() {
        let a = Admission::new(None);
        let permits: alloc::vec::Vec<_> = (0..1000).map(|_| a.try_admit().unwrap()).collect();
        assert_eq!(a.live(), 1000);
        drop(permits);
        assert_eq!(a.live(), 0);
    }
}
