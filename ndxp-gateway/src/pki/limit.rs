//! How many signing operations the trust services run at once: a global
//! bound and a per-address share of it, refused at once when reached
//! (`503` with `Retry-After`, never a growing line). The counting is the
//! edge's ([`ndxp_edge::limit::AddressLimit`]); an IPv6 client counts by
//! its /64.

use std::net::IpAddr;

use ndxp_edge::limit::{AddressLimit, AddressPermit};

use crate::gateway::backoff::counted_address;

/// The bound of the trust services' signing work.
#[derive(Debug)]
pub(super) struct SigningLimit(AddressLimit);

/// One signing operation's place; given back when dropped.
pub(super) type SigningPermit = AddressPermit;

impl SigningLimit {
    /// At most `global` operations at once, at most `per_address` of them
    /// for one client address (both at least 1).
    pub(super) fn new(global: usize, per_address: usize) -> Self {
        Self(AddressLimit::new(global, per_address))
    }

    /// A place for one operation of `ip`, or `None` when its share or the
    /// global bound is taken.
    pub(super) fn try_acquire(&self, ip: IpAddr) -> Option<SigningPermit> {
        self.0.try_acquire(counted_address(ip)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn an_ipv6_client_counts_by_its_64() {
        let limit = SigningLimit::new(3, 1);
        let a: IpAddr = "2001:db8:1:1::1".parse::<Ipv6Addr>().unwrap().into();
        let same_64: IpAddr = "2001:db8:1:1::2".parse::<Ipv6Addr>().unwrap().into();
        let other_64: IpAddr = "2001:db8:1:2::1".parse::<Ipv6Addr>().unwrap().into();
        let _a = limit.try_acquire(a).unwrap();
        assert!(
            limit.try_acquire(same_64).is_none(),
            "same /64, share taken"
        );
        assert!(limit.try_acquire(other_64).is_some());
    }
}
