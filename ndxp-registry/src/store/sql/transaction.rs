//! Several writes as one transaction: [`SqlTransaction`].
//!
//! The store of a transaction ([`SqlTransaction::store`]) is an ordinary
//! [`SqlStore`] whose writes take the one open database transaction from a
//! shared slot instead of beginning their own, and put it back when they
//! finish instead of committing. Each write still bumps the registry
//! version and appends its own audit entry, so the module invariant holds
//! write by write; [`SqlTransaction::commit`] makes all of them visible at
//! once, and dropping the transaction (or calling
//! [`SqlTransaction::rollback`]) leaves nothing behind.
//!
//! A write that fails after it took the transaction drops it, which rolls
//! the whole transaction back: the slot stays empty, so every later write
//! and the commit fail with [`StoreError::Invalid`] instead of committing
//! a half-applied batch.

use std::sync::Arc;

use sqlx::{Any, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::{db, SqlStore};
use crate::store::{Result, StoreError};

type Tx = Transaction<'static, Any>;

/// The open transaction of a [`SqlTransaction`], shared by the writes on
/// its store; `None` once it was committed, rolled back or abandoned.
#[derive(Clone)]
pub(super) struct Shared(Arc<Mutex<Option<Tx>>>);

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared(..)")
    }
}

/// Held by a write while it uses the shared transaction: no other write of
/// the same transaction runs meanwhile.
pub(super) struct Slot(OwnedMutexGuard<Option<Tx>>);

impl Slot {
    /// Returns the transaction after a successful write.
    pub(super) fn put_back(mut self, tx: Tx) {
        *self.0 = Some(tx);
    }
}

fn closed() -> StoreError {
    StoreError::Invalid(
        "the registry transaction is closed: an earlier write in it failed (nothing of it was \
         committed), or it was already committed"
            .into(),
    )
}

impl Shared {
    /// Takes the transaction for one write.
    pub(super) async fn take(&self) -> Result<(Tx, Slot)> {
        let mut guard = Arc::clone(&self.0).lock_owned().await;
        let tx = guard.take().ok_or_else(closed)?;
        Ok((tx, Slot(guard)))
    }
}

/// Writes that commit together or not at all (see the module docs).
///
/// While it is open the transaction holds the registry's write lock, so
/// other writers (other processes too) wait for it; the reads of its
/// [`store`](Self::store) return the committed state, which therefore
/// cannot change under it, without the transaction's own writes.
///
/// ```no_run
/// # async fn demo(store: &ndxp_registry::store::SqlStore) -> ndxp_registry::store::Result<()> {
/// use ndxp_registry::model::Actor;
/// use ndxp_registry::store::RegistryStore;
/// let tx = store.transaction().await?;
/// let actor = Actor::cli("root");
/// let member = "VN/GOV/000.00.00.H29".parse().map_err(|e| {
///     ndxp_registry::store::StoreError::Invalid(format!("{e}"))
/// })?;
/// tx.store().add_member(&member, "Bộ Công an", &actor).await?;
/// tx.store().add_group("gov", "Government", &actor).await?;
/// tx.commit().await?; // both, or neither when anything failed
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SqlTransaction {
    store: SqlStore,
}

impl SqlStore {
    /// Opens a transaction for several writes (see [`SqlTransaction`]).
    /// `Invalid` on the store of a transaction (they do not nest).
    pub async fn transaction(&self) -> Result<SqlTransaction> {
        if self.shared.is_some() {
            return Err(StoreError::Invalid(
                "registry transactions do not nest".into(),
            ));
        }
        let mut tx = self.begin_immediate().await?;
        // Take the state row's lock now (PostgreSQL; SQLite's BEGIN
        // IMMEDIATE already holds the database's): no other write commits
        // until this transaction ends, so what its caller reads first
        // stays true.
        sqlx::query("UPDATE registry_state SET version = version WHERE id = 1")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let mut store = self.clone();
        store.shared = Some(Shared(Arc::new(Mutex::new(Some(tx)))));
        Ok(SqlTransaction { store })
    }
}

impl SqlTransaction {
    /// The store whose writes join this transaction.
    pub fn store(&self) -> &SqlStore {
        &self.store
    }

    fn shared(&self) -> Result<&Shared> {
        self.store.shared.as_ref().ok_or_else(closed)
    }

    /// Commits every write made on [`store`](Self::store). `Invalid` when
    /// a write failed (the transaction was rolled back then).
    pub async fn commit(self) -> Result<()> {
        let (tx, _slot) = self.shared()?.take().await?;
        tx.commit().await.map_err(db)
    }

    /// Undoes every write made on [`store`](Self::store) (dropping the
    /// transaction does the same, without waiting for the database).
    pub async fn rollback(self) -> Result<()> {
        match self.shared()?.take().await {
            Ok((tx, _slot)) => tx.rollback().await.map_err(db),
            // Already rolled back by the write that failed.
            Err(_) => Ok(()),
        }
    }
}
