//! OCSP answers produced ahead of time and served until they age.
//!
//! An answer is kept per CertID (hash algorithm and serial) with the status
//! it states. It is served while it is younger than half its validity
//! ("fresh"); between then and its `nextUpdate` it is still served when no
//! signing place is free ("usable"), so a flood never turns a known
//! certificate's answer into an error. Every lookup compares the kept
//! status with the PKI directory's status now (two file-system lookups),
//! so a revocation, even by another process, replaces the kept answer on
//! the next request.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use ndxp_sign::ocsp::CertIdKey;
use ndxp_sign::revocation::CertStatus;

/// Most answers kept (one per issued certificate and CertID hash algorithm).
const MAX_ANSWERS: usize = 1_000_000;

#[derive(Debug)]
struct Entry {
    der: Bytes,
    status: CertStatus,
    refresh_at: DateTime<Utc>,
    next_update: DateTime<Utc>,
}

/// What the cache holds for a request.
#[derive(Debug)]
pub(super) enum Cached {
    /// Serve it.
    Fresh(Bytes),
    /// Valid, but due for renewal: sign anew if a place is free, else serve.
    Usable(Bytes),
    /// Nothing valid with the current status: sign.
    Miss,
}

/// The kept answers.
#[derive(Debug, Default)]
pub(super) struct AnswerCache {
    entries: RwLock<HashMap<CertIdKey, Entry>>,
}

impl AnswerCache {
    /// The kept answer for `key` if it states `current` and is valid at
    /// `now`.
    pub(super) fn get(&self, key: &CertIdKey, current: &CertStatus, now: DateTime<Utc>) -> Cached {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        match entries.get(key) {
            Some(e) if &e.status == current && now < e.refresh_at => Cached::Fresh(e.der.clone()),
            Some(e) if &e.status == current && now < e.next_update => Cached::Usable(e.der.clone()),
            _ => Cached::Miss,
        }
    }

    /// Whether `key` holds a fresh answer stating `current` at `now`.
    pub(super) fn is_fresh(
        &self,
        key: &CertIdKey,
        current: &CertStatus,
        now: DateTime<Utc>,
    ) -> bool {
        matches!(self.get(key, current, now), Cached::Fresh(_))
    }

    /// Keeps `der`, stating `status`, produced at `now` and valid for
    /// `validity`. Only `good` and `revoked` answers are kept: an `unknown`
    /// serial costs a signature each time, within the signing limit.
    pub(super) fn put(
        &self,
        key: CertIdKey,
        der: Vec<u8>,
        status: CertStatus,
        now: DateTime<Utc>,
        validity: chrono::Duration,
    ) {
        if status == CertStatus::Unknown {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ANSWERS && !entries.contains_key(&key) {
            entries.retain(|_, e| e.next_update > now);
            if entries.len() >= MAX_ANSWERS {
                return;
            }
        }
        entries.insert(
            key,
            Entry {
                der: Bytes::from(der),
                status,
                refresh_at: now + validity / 2,
                next_update: now + validity,
            },
        );
    }

    /// Number of answers kept.
    pub(super) fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
