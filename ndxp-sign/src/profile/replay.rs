//! [`ReplayCache`]: (`NDXP-Id`, signer) pairs seen within the window.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use ndxp_core::{MemberId, TransactionId};

use super::verify::{check_window, unix};
use super::{ProfileError, Result};

pub(super) type ReplayKey = (TransactionId, String);

pub(super) struct ReplayInner {
    /// Live entries: key → (expiry, sequence number of its queue entry).
    map: HashMap<ReplayKey, (i64, u64)>,
    /// Insertion order with a conservative deadline (insertion time plus
    /// twice the window, never before the entry's own expiry), and the
    /// signer's member the entry counts against.
    queue: VecDeque<(i64, u64, ReplayKey, Arc<MemberId>)>,
    /// Queue entries per signer member (members with none are removed).
    per_member: HashMap<Arc<MemberId>, usize>,
    seq: u64,
}

/// Remembers accepted (`NDXP-Id`, signer fingerprint) pairs for the
/// acceptance window, to refuse replays (`docs/signatures.md`).
///
/// An entry for a message created at `created` expires at
/// `created + window`: after that a replay fails the window check anyway.
/// The cache is bounded: when `max_entries` are held, expired entries are
/// dropped first (oldest first, O(1) amortised per insertion); if all are
/// still live, the new message is refused with
/// [`ProfileError::ReplayCacheFull`] rather than forgetting a live entry.
/// Size it above the peak message rate times twice the window.
///
/// Each signer member may hold at most its share of the entries
/// ([`ReplayCache::with_max_per_member`], default all of them): beyond it
/// that member's new messages are refused with
/// [`ProfileError::ReplayShareFull`] while other members keep being
/// accepted. The count is one more hash lookup per message.
///
/// Thread-safe (one mutex). **Each node process has its own cache**; several
/// processes behind a load balancer share no memory, so there the node
/// backs the replay check with its database instead.
pub struct ReplayCache {
    window: u64,
    max_entries: usize,
    max_per_member: usize,
    inner: Mutex<ReplayInner>,
}

impl fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayCache")
            .field("window", &self.window)
            .field("max_entries", &self.max_entries)
            .field("max_per_member", &self.max_per_member)
            .field("len", &self.len())
            .finish()
    }
}

impl ReplayCache {
    /// A cache for `window` seconds holding at most `max_entries` entries,
    /// with no per-member share below that.
    #[must_use]
    pub fn new(window: u64, max_entries: usize) -> Self {
        Self {
            window,
            max_entries,
            max_per_member: max_entries,
            inner: Mutex::new(ReplayInner {
                map: HashMap::new(),
                queue: VecDeque::new(),
                per_member: HashMap::new(),
                seq: 0,
            }),
        }
    }

    /// With at most `max_per_member` live entries for any one signer
    /// member (capped at `max_entries`).
    #[must_use]
    pub fn with_max_per_member(mut self, max_per_member: usize) -> Self {
        self.max_per_member = max_per_member.min(self.max_entries);
        self
    }

    /// The window in seconds.
    #[must_use]
    pub fn window(&self) -> u64 {
        self.window
    }

    /// The per-member share.
    #[must_use]
    pub fn max_per_member(&self) -> usize {
        self.max_per_member
    }

    /// Entries currently held (live or not yet evicted).
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether no entry is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReplayInner> {
        // A panic while holding the lock cannot leave the maps inconsistent
        // in a way that accepts a replay; keep going.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Record (`id`, `signer`) for a message of `member` created at
    /// `created`, or refuse it as a replay.
    ///
    /// # Errors
    /// [`ProfileError::OutsideWindow`] when `created` is not within
    /// `now ± window`; [`ProfileError::Replay`] when the pair is held and
    /// live; [`ProfileError::ReplayShareFull`] when `member` holds its
    /// share; [`ProfileError::ReplayCacheFull`] when no room can be made.
    pub fn check_and_insert(
        &self,
        id: TransactionId,
        member: &MemberId,
        signer: &str,
        created: i64,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let now = unix(now);
        check_window(created, now, self.window)?;
        let w = i64::try_from(self.window).unwrap_or(i64::MAX);
        let expiry = created.saturating_add(w);
        let key = (id, signer.to_owned());
        let mut inner = self.lock();
        if let Some((exp, _)) = inner.map.get(&key) {
            if *exp >= now {
                return Err(ProfileError::Replay {
                    ndxp_id: id,
                    fingerprint: signer.to_owned(),
                });
            }
        }
        // Evict from the front while the conservative deadline has passed.
        while let Some((deadline, ..)) = inner.queue.front() {
            if *deadline >= now {
                break;
            }
            if let Some((_, seq, k, m)) = inner.queue.pop_front() {
                if inner.map.get(&k).is_some_and(|(_, s)| *s == seq) {
                    inner.map.remove(&k);
                }
                if let Some(n) = inner.per_member.get_mut(&m) {
                    *n -= 1;
                    if *n == 0 {
                        inner.per_member.remove(&m);
                    }
                }
            }
        }
        if inner.queue.len() >= self.max_entries {
            return Err(ProfileError::ReplayCacheFull {
                max_entries: self.max_entries,
            });
        }
        let member = match inner.per_member.get_key_value(member) {
            Some((_, n)) if *n >= self.max_per_member => {
                return Err(ProfileError::ReplayShareFull {
                    member: Box::new(member.clone()),
                    max_per_member: self.max_per_member,
                })
            }
            Some((m, _)) => m.clone(),
            None => Arc::new(member.clone()),
        };
        *inner.per_member.entry(member.clone()).or_insert(0) += 1;
        inner.seq += 1;
        let seq = inner.seq;
        let deadline = now.saturating_add(w.saturating_mul(2)).max(expiry);
        inner.map.insert(key.clone(), (expiry, seq));
        inner.queue.push_back((deadline, seq, key, member));
        Ok(())
    }
}
