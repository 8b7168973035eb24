//! Backoff after failed client authentications at the token endpoint.
//!
//! Failures are counted per client id *and* address, and per address
//! alone. After `free` failures of one client id from one address, further
//! attempts of that client id from that address are refused for a growing
//! time (1 s, 2 s, 4 s, ... up to `max`); an address that fails
//! `ADDRESS_FACTOR` times as often, whatever the client ids, is refused
//! altogether. A refusal costs one map lookup: no secret is hashed. A
//! success clears the client id's count at that address.
//!
//! A client id is never blocked for every address: anyone who knows a
//! client id (it is not a secret) could then lock its owner out. Guessing a
//! 256-bit secret is hopeless anyway, so the backoff is about cost, not
//! about guessing: the owner, calling from its own address, keeps getting
//! tokens while another address floods its client id.
//!
//! Hand-written: the rate-limiting crates (governor, tower's `RateLimit`)
//! limit every request, while this counts only failures and must let the
//! successful client through untouched.
//!
//! IPv6 addresses are counted per /64, the block one host usually gets, so
//! that a host cannot start afresh by changing the low bits.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// An address fails this many times the per-client allowance before every
/// client id from it is refused (one address may be a NAT in front of many
/// applications, one of which is misconfigured).
const ADDRESS_FACTOR: u32 = 4;
/// Most failure records kept; past it, records that no longer block are
/// dropped first.
const MAX_ENTRIES: usize = 100_000;
/// The first backoff step.
const FIRST_STEP: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Client(String, IpAddr),
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    last: Instant,
    until: Option<Instant>,
}

/// The failure counters (see the module documentation).
#[derive(Debug)]
pub(super) struct FailureBackoff {
    free: u32,
    max: Duration,
    entries: Mutex<HashMap<Key, Entry>>,
}

/// A client address as limits count it: IPv4 as is, IPv6 by its /64 (the
/// block one host usually gets).
pub(crate) fn counted_address(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

impl FailureBackoff {
    /// Counters that start refusing after `free` failures (at least 1) and
    /// never refuse for longer than `max`.
    pub(super) fn new(free: u32, max: Duration) -> Self {
        Self {
            free: free.max(1),
            max: max.max(FIRST_STEP),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn keys(client_id: Option<&str>, ip: IpAddr) -> (Key, Option<Key>) {
        let ip = counted_address(ip);
        (
            Key::Address(ip),
            client_id.map(|c| Key::Client(c.to_string(), ip)),
        )
    }

    /// How long `client_id` (if known) from `ip` must still wait, if it is
    /// in backoff at `now`.
    pub(super) fn blocked(
        &self,
        client_id: Option<&str>,
        ip: IpAddr,
        now: Instant,
    ) -> Option<Duration> {
        let (address, client) = Self::keys(client_id, ip);
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        [Some(address), client]
            .into_iter()
            .flatten()
            .filter_map(|k| entries.get(&k)?.until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    /// Counts a failed attempt of `client_id` (`None`: an unknown client
    /// id) from `ip` at `now`.
    pub(super) fn failed(&self, client_id: Option<&str>, ip: IpAddr, now: Instant) {
        let (address, client) = Self::keys(client_id, ip);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES {
            let forget = self.max.saturating_mul(2);
            entries.retain(|_, e| {
                e.until.is_some_and(|u| u > now) || now.duration_since(e.last) < forget
            });
            if entries.len() >= MAX_ENTRIES {
                entries.retain(|_, e| e.until.is_some_and(|u| u > now));
            }
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        let free = self.free;
        self.count(
            &mut entries,
            address,
            free.saturating_mul(ADDRESS_FACTOR),
            now,
        );
        if let Some(client) = client {
            self.count(&mut entries, client, free, now);
        }
    }

    fn count(&self, entries: &mut HashMap<Key, Entry>, key: Key, free: u32, now: Instant) {
        let entry = entries.entry(key).or_insert(Entry {
            failures: 0,
            last: now,
            until: None,
        });
        // A quiet spell twice the longest step long starts the count afresh.
        if now.duration_since(entry.last) > self.max.saturating_mul(2) {
            entry.failures = 0;
            entry.until = None;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
        if entry.failures >= free {
            let doublings = (entry.failures - free).min(20);
            let step = FIRST_STEP.saturating_mul(1 << doublings).min(self.max);
            entry.until = Some(now + step);
        }
    }

    /// Clears the count of `client_id` at `ip` after a successful attempt.
    pub(super) fn succeeded(&self, client_id: &str, ip: IpAddr) {
        let (_, client) = Self::keys(Some(client_id), ip);
        if let Some(client) = client {
            self.entries
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn a_client_id_is_slowed_only_at_the_failing_address() {
        let b = FailureBackoff::new(3, Duration::from_secs(60));
        let t = Instant::now();
        for _ in 0..2 {
            b.failed(Some("c"), A, t);
        }
        assert_eq!(b.blocked(Some("c"), A, t), None, "two free failures");
        b.failed(Some("c"), A, t);
        assert_eq!(b.blocked(Some("c"), A, t), Some(Duration::from_secs(1)));
        b.failed(Some("c"), A, t);
        assert_eq!(b.blocked(Some("c"), A, t), Some(Duration::from_secs(2)));
        assert_eq!(b.blocked(Some("c"), B, t), None, "the owner elsewhere");
        assert_eq!(b.blocked(Some("d"), A, t), None, "other ids from A");
        assert_eq!(b.blocked(Some("c"), A, t + Duration::from_secs(3)), None);
        b.succeeded("c", A);
        b.failed(Some("c"), A, t);
        assert_eq!(b.blocked(Some("c"), A, t), None, "success starts afresh");
    }

    #[test]
    fn an_address_failing_with_many_ids_is_refused_and_the_step_is_capped() {
        let b = FailureBackoff::new(2, Duration::from_secs(5));
        let t = Instant::now();
        for i in 0..8 {
            b.failed(Some(&format!("id{i}")), A, t);
        }
        assert!(b.blocked(Some("fresh"), A, t).is_some());
        assert!(b.blocked(None, A, t).is_some());
        for _ in 0..30 {
            b.failed(None, A, t);
        }
        assert_eq!(b.blocked(None, A, t), Some(Duration::from_secs(5)));
        assert_eq!(b.blocked(None, B, t), None);
    }

    #[test]
    fn ipv6_hosts_are_counted_by_their_64_block() {
        let b = FailureBackoff::new(1, Duration::from_secs(60));
        let t = Instant::now();
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap_or(A);
        let other_host: IpAddr = "2001:db8:1:2::ffff".parse().unwrap_or(A);
        let other_net: IpAddr = "2001:db8:1:3::1".parse().unwrap_or(A);
        for _ in 0..4 {
            b.failed(None, one, t);
        }
        assert!(b.blocked(None, other_host, t).is_some());
        assert!(b.blocked(None, other_net, t).is_none());
    }
}
