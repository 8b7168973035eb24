//! How many signing operations the trust services run at once: a global
//! bound and a per-address share of it, refused at once when reached.
//!
//! The global bound is a tokio semaphore taken with `try_acquire` (the
//! refusal is immediate: `503` with `Retry-After`, never a growing line).
//! The per-address share is hand-written around it because tower's
//! `ConcurrencyLimit` and `LoadShed` bound a whole service, not each
//! client: without a share one flooding address would take every permit
//! and a good client would be refused with it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::gateway::backoff::counted_address;

/// The bound of the trust services' signing work.
#[derive(Debug)]
pub(super) struct SigningLimit {
    global: Arc<Semaphore>,
    per_address: usize,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One signing operation's place; given back when dropped.
#[derive(Debug)]
pub(super) struct SigningPermit {
    _global: OwnedSemaphorePermit,
    address: IpAddr,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for SigningPermit {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.address);
            }
        }
    }
}

impl SigningLimit {
    /// At most `global` operations at once, at most `per_address` of them
    /// for one client address (both at least 1).
    pub(super) fn new(global: usize, per_address: usize) -> Self {
        Self {
            global: Arc::new(Semaphore::new(global.max(1))),
            per_address: per_address.max(1),
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A place for one operation of `ip`, or `None` when its share or the
    /// global bound is taken.
    pub(super) fn try_acquire(&self, ip: IpAddr) -> Option<SigningPermit> {
        let address = counted_address(ip);
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let n = held.entry(address).or_insert(0);
        if *n >= self.per_address {
            return None;
        }
        let global = self.global.clone().try_acquire_owned().ok()?;
        *n += 1;
        Some(SigningPermit {
            _global: global,
            address,
            held: self.held.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn one_address_gets_its_share_and_places_come_back() {
        let limit = SigningLimit::new(3, 2);
        let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        let c = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));
        let a1 = limit.try_acquire(a).unwrap();
        let _a2 = limit.try_acquire(a).unwrap();
        assert!(limit.try_acquire(a).is_none(), "a's share is taken");
        let _b1 = limit.try_acquire(b).unwrap();
        assert!(limit.try_acquire(c).is_none(), "the global bound is taken");
        drop(a1);
        assert!(limit.try_acquire(c).is_some());
        assert!(limit.try_acquire(a).is_some());
    }
}
