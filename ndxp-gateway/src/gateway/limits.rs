//! Per-subscription rate limits and daily quotas, in memory.
//!
//! The rate is a token bucket: `rate_per_sec` tokens a second, holding at
//! most `burst` (at least 1). The quota counts calls per UTC day. Each
//! gateway process keeps its own counters: with N processes behind a load
//! balancer a subscription may reach up to N times its limits (documented
//! in `docs/gateway.md`).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use uuid::Uuid;

/// Effective limits of one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Requests per second; 0 = unlimited.
    pub rate_per_sec: u64,
    /// Bucket size; 0 means the rate itself (at least 1).
    pub burst: u64,
    /// Requests per UTC day; 0 = unlimited.
    pub quota_per_day: u64,
}

/// Why a call was refused, and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The rate was exceeded; retry after this many seconds.
    Rate {
        /// Seconds until a token is available (at least 1).
        retry_after: u64,
    },
    /// The daily quota is used up; retry after this many seconds.
    Quota {
        /// Seconds until the next UTC day (at least 1).
        retry_after: u64,
    },
}

impl Refusal {
    /// Seconds for `Retry-After`.
    pub fn retry_after(self) -> u64 {
        match self {
            Refusal::Rate { retry_after } | Refusal::Quota { retry_after } => retry_after,
        }
    }
}

#[derive(Debug)]
struct State {
    tokens: f64,
    last: f64,
    day: i64,
    used_today: u64,
}

/// The counters of every subscription.
#[derive(Debug, Default)]
pub struct Limiter {
    states: Mutex<HashMap<Uuid, State>>,
}

const DAY: i64 = 86_400;

impl Limiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one call for `subscription` at `now` (Unix seconds, with
    /// fraction) or says why not. A refused call uses nothing.
    pub fn check(&self, subscription: Uuid, limit: Limit, now: f64) -> Result<(), Refusal> {
        if limit.rate_per_sec == 0 && limit.quota_per_day == 0 {
            return Ok(());
        }
        // Precision loss is irrelevant at these magnitudes.
        #[allow(clippy::cast_precision_loss)]
        let (rate, capacity) = (
            limit.rate_per_sec as f64,
            limit.burst.max(limit.rate_per_sec).max(1) as f64,
        );
        #[allow(clippy::cast_possible_truncation)]
        let day = (now as i64).div_euclid(DAY);
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let st = states.entry(subscription).or_insert(State {
            tokens: capacity,
            last: now,
            day,
            used_today: 0,
        });
        if st.day != day {
            st.day = day;
            st.used_today = 0;
        }
        if limit.quota_per_day > 0 && st.used_today >= limit.quota_per_day {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let left = ((day + 1) * DAY - now as i64).max(1) as u64;
            return Err(Refusal::Quota { retry_after: left });
        }
        if limit.rate_per_sec > 0 {
            let elapsed = (now - st.last).max(0.0);
            st.tokens = (st.tokens + elapsed * rate).min(capacity);
            st.last = now;
            if st.tokens < 1.0 {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let wait = ((1.0 - st.tokens) / rate).ceil().max(1.0) as u64;
                return Err(Refusal::Rate { retry_after: wait });
            }
            st.tokens -= 1.0;
        }
        st.used_today += 1;
        Ok(())
    }

    /// Forgets subscriptions not in `keep` (cancelled ones).
    pub fn retain(&self, keep: &dyn Fn(&Uuid) -> bool) {
        self.states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k, _| keep(k));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A fresh limiter, a subscription id and its limit.
    fn limited(rate_per_sec: u64, burst: u64, quota_per_day: u64) -> (Limiter, Uuid, Limit) {
        let limit = Limit {
            rate_per_sec,
            burst,
            quota_per_day,
        };
        (Limiter::new(), Uuid::now_v7(), limit)
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let (l, id, limit) = limited(2, 3, 0);
        let t = 1_000_000.0;
        for _ in 0..3 {
            l.check(id, limit, t).unwrap();
        }
        let r = l.check(id, limit, t).unwrap_err();
        assert_eq!(r, Refusal::Rate { retry_after: 1 });
        // Half a second later one token is back.
        l.check(id, limit, t + 0.5).unwrap();
        assert!(l.check(id, limit, t + 0.5).is_err());
    }

    #[test]
    fn the_quota_resets_at_utc_midnight() {
        let (l, id, limit) = limited(0, 0, 2);
        let midnight = 20_000.0 * 86_400.0;
        let t = midnight - 100.0;
        l.check(id, limit, t).unwrap();
        l.check(id, limit, t).unwrap();
        assert_eq!(
            l.check(id, limit, t).unwrap_err(),
            Refusal::Quota { retry_after: 100 }
        );
        l.check(id, limit, midnight).unwrap();
    }

    #[test]
    fn unlimited_subscriptions_are_not_tracked() {
        let (l, _, limit) = limited(0, 0, 0);
        for _ in 0..1000 {
            l.check(Uuid::now_v7(), limit, 1.0).unwrap();
        }
        assert!(l.states.lock().unwrap().is_empty());
    }
}
