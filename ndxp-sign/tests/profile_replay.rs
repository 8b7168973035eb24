//! NDXP signature profile: replay refusal and the replay cache's bounds.

#![allow(clippy::unwrap_used)]

mod profile_support;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use ndxp_core::{ErrorCode, MemberId, TransactionId};
use ndxp_sign::key::KeyAlgorithm;
use ndxp_sign::profile::{self, ProfileError, ReplayCache};
use profile_support::*;

/// The signer member of the cache-only tests.
fn m() -> MemberId {
    CONSUMER.parse().unwrap()
}

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).unwrap()
}

#[test]
fn a_replayed_request_is_refused_while_another_id_passes() {
    let ca = Ca::new("NDXP Test Root");
    let consumer = ca.signer(CONSUMER, KeyAlgorithm::EcP256);
    let cache = Arc::new(ReplayCache::new(profile::DEFAULT_WINDOW_SECS, 1000));
    let policy = ca.policy().with_replay_cache(cache.clone());
    let t = now();
    let id = TransactionId::new();
    let sent = signed_request(&consumer, id, t);
    profile::verify_request(&sent, &policy, t).unwrap();
    let e = profile::verify_request(&sent, &policy, t + Duration::seconds(5)).unwrap_err();
    assert!(
        matches!(e, ProfileError::Replay { ndxp_id, .. } if ndxp_id == id),
        "{e:?}"
    );
    assert_eq!(e.problem_code(), ErrorCode::SignatureInvalid);
    // Re-signed with a fresh `created` it is still the same (id, signer).
    let again = signed_request(&consumer, id, t + Duration::seconds(1));
    assert!(matches!(
        profile::verify_request(&again, &policy, t + Duration::seconds(2)),
        Err(ProfileError::Replay { .. })
    ));
    // Another id passes.
    profile::verify_request(
        &signed_request(&consumer, TransactionId::new(), t),
        &policy,
        t,
    )
    .unwrap();
    // The provider's response with the same id is another signer: passes.
    let provider = ca.signer(PROVIDER, KeyAlgorithm::EcP256);
    let resp = signed_response(&provider, &as_received(&sent), t);
    profile::verify_response(&resp, &sent, &policy, t).unwrap();
    // A message that fails verification never enters the cache, so a
    // forgery cannot lock out the genuine message.
    let fresh = TransactionId::new();
    let mut forged = signed_request(&consumer, fresh, t);
    forged.method = http::Method::DELETE;
    assert!(profile::verify_request(&forged, &policy, t).is_err());
    profile::verify_request(&signed_request(&consumer, fresh, t), &policy, t).unwrap();
    assert_eq!(cache.len(), 4);
}

#[test]
fn entries_expire_after_the_window() {
    let cache = ReplayCache::new(300, 10);
    let id = TransactionId::new();
    let t = t0();
    let created = t.timestamp();
    cache
        .check_and_insert(id, &m(), "fp-a", created, t)
        .unwrap();
    cache
        .check_and_insert(id, &m(), "fp-b", created, t)
        .unwrap();
    assert!(matches!(
        cache.check_and_insert(id, &m(), "fp-a", created, t + Duration::seconds(300)),
        Err(ProfileError::Replay { .. })
    ));
    // Past created + window the message is outside the window anyway.
    assert!(matches!(
        cache.check_and_insert(id, &m(), "fp-a", created, t + Duration::seconds(301)),
        Err(ProfileError::OutsideWindow { .. })
    ));
    // A later message reusing the id (new `created`) is accepted once the
    // old entry has expired, and the old entries are gone.
    let later = t + Duration::seconds(301);
    cache
        .check_and_insert(id, &m(), "fp-a", later.timestamp(), later)
        .unwrap();
    let much_later = t + Duration::seconds(601);
    cache
        .check_and_insert(
            TransactionId::new(),
            &m(),
            "fp-c",
            much_later.timestamp(),
            much_later,
        )
        .unwrap();
    assert_eq!(cache.len(), 2, "fp-b (and the first fp-a) evicted");
}

#[test]
fn a_full_cache_evicts_expired_entries_first_and_refuses_rather_than_forgetting_live_ones() {
    let cache = ReplayCache::new(60, 3);
    let t = t0();
    for _ in 0..3 {
        cache
            .check_and_insert(TransactionId::new(), &m(), "fp", t.timestamp(), t)
            .unwrap();
    }
    let e = cache
        .check_and_insert(
            TransactionId::new(),
            &m(),
            "fp",
            t.timestamp(),
            t + Duration::seconds(1),
        )
        .unwrap_err();
    assert!(
        matches!(e, ProfileError::ReplayCacheFull { max_entries: 3 }),
        "{e:?}"
    );
    assert_eq!(e.problem_code(), ErrorCode::RateLimited);
    // Once the old ones are expired there is room again.
    let later = t + Duration::seconds(121);
    for _ in 0..3 {
        cache
            .check_and_insert(TransactionId::new(), &m(), "fp", later.timestamp(), later)
            .unwrap();
    }
    assert_eq!(cache.len(), 3);
}

#[test]
fn the_cache_is_shared_safely_between_threads() {
    let cache = Arc::new(ReplayCache::new(300, 100_000));
    let t = t0();
    let ids: Vec<TransactionId> = (0..200).map(|_| TransactionId::new()).collect();
    let accepted: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let cache = cache.clone();
                let ids = &ids;
                s.spawn(move || {
                    ids.iter()
                        .filter(|id| {
                            cache
                                .check_and_insert(**id, &m(), "fp", t.timestamp(), t)
                                .is_ok()
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    // Every id accepted exactly once across all threads.
    assert_eq!(accepted, ids.len());
}

#[test]
fn a_member_that_fills_its_share_is_refused_while_other_members_pass() {
    let cache = ReplayCache::new(60, 100).with_max_per_member(3);
    let (a, b): (MemberId, MemberId) = (CONSUMER.parse().unwrap(), PROVIDER.parse().unwrap());
    let t = t0();
    for _ in 0..3 {
        cache
            .check_and_insert(TransactionId::new(), &a, "fp-a", t.timestamp(), t)
            .unwrap();
    }
    let e = cache
        .check_and_insert(TransactionId::new(), &a, "fp-a2", t.timestamp(), t)
        .unwrap_err();
    assert!(
        matches!(&e, ProfileError::ReplayShareFull { member, max_per_member: 3 } if **member == a),
        "{e:?}"
    );
    assert_eq!(e.problem_code(), ErrorCode::RateLimited);
    assert!(e.to_string().contains(CONSUMER), "{e}");
    // Another member still gets in, up to its own share.
    for _ in 0..3 {
        cache
            .check_and_insert(TransactionId::new(), &b, "fp-b", t.timestamp(), t)
            .unwrap();
    }
    // Once the first member's entries leave the window it has room again.
    let later = t + Duration::seconds(121);
    cache
        .check_and_insert(TransactionId::new(), &a, "fp-a", later.timestamp(), later)
        .unwrap();
    assert_eq!(cache.len(), 1);
}
