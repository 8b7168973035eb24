//! A bound in all and a bound per client address, taken at once or refused
//! at once (never a queue): the edge's connection limits and the trust
//! services' signing limits both use it.
//!
//! Hand-written because tower's `ConcurrencyLimit`/`LoadShed` bound a whole
//! service, not each client, and no crate we use counts by remote address:
//! without a per-address share one flooding client would take every place.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Why [`AddressLimit::try_acquire`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every place is taken.
    Total,
    /// The address holds its whole share.
    PerAddress,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// At most `max_total` places in all, at most `max_per_address` of them
/// for one address. The caller chooses the address key (e.g. an IPv6 /64).
#[derive(Debug)]
pub struct AddressLimit {
    max_total: usize,
    max_per_address: usize,
    counts: Arc<Mutex<Counts>>,
}

/// One place, given back when dropped.
#[derive(Debug)]
pub struct AddressPermit {
    counts: Arc<Mutex<Counts>>,
    address: IpAddr,
}

fn lock(counts: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for AddressPermit {
    fn drop(&mut self) {
        let mut c = lock(&self.counts);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_address.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_address.remove(&self.address);
            }
        }
    }
}

impl AddressLimit {
    /// A limit of `max_total` places, `max_per_address` per address (both
    /// at least 1).
    #[must_use]
    pub fn new(max_total: usize, max_per_address: usize) -> Self {
        Self {
            max_total: max_total.max(1),
            max_per_address: max_per_address.max(1),
            counts: Arc::new(Mutex::new(Counts::default())),
        }
    }

    /// A place for `address`, or why there is none.
    ///
    /// # Errors
    /// [`Refusal`] when the bound in all or the address's share is taken.
    pub fn try_acquire(&self, address: IpAddr) -> Result<AddressPermit, Refusal> {
        let mut c = lock(&self.counts);
        if c.total >= self.max_total {
            return Err(Refusal::Total);
        }
        let n = c.per_address.entry(address).or_insert(0);
        if *n >= self.max_per_address {
            return Err(Refusal::PerAddress);
        }
        *n += 1;
        c.total += 1;
        Ok(AddressPermit {
            counts: self.counts.clone(),
            address,
        })
    }

    /// Places held now.
    #[must_use]
    pub fn held(&self) -> usize {
        lock(&self.counts).total
    }

    /// The bound in all.
    #[must_use]
    pub fn max_total(&self) -> usize {
        self.max_total
    }

    /// The bound per address.
    #[must_use]
    pub fn max_per_address(&self) -> usize {
        self.max_per_address
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn one_address_gets_its_share_and_places_come_back() {
        let limit = AddressLimit::new(3, 2);
        let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        let c = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3));
        let a1 = limit.try_acquire(a).unwrap();
        let _a2 = limit.try_acquire(a).unwrap();
        assert_eq!(limit.try_acquire(a).unwrap_err(), Refusal::PerAddress);
        let _b1 = limit.try_acquire(b).unwrap();
        assert_eq!(limit.try_acquire(c).unwrap_err(), Refusal::Total);
        assert_eq!(limit.held(), 3);
        drop(a1);
        assert!(limit.try_acquire(c).is_ok());
        assert_eq!(limit.held(), 2, "c's place was given back at once");
        assert!(limit.try_acquire(a).is_ok());
    }
}
