//! Several writes in one transaction (`SqlStore::transaction`): all or
//! nothing, each still audited and versioned, other writers wait. Runs on
//! SQLite and, when `NDXP_TEST_POSTGRES_URL` is set, on PostgreSQL.
#![allow(clippy::unwrap_used)]

mod store_support;

use std::time::Duration;

use ndxp_core::{MemberId, SubsystemId};
use ndxp_registry::model::Actor;
use ndxp_registry::store::{RegistryStore, StoreError};
use store_support::with_each_backend;

fn member(s: &str) -> MemberId {
    s.parse().unwrap()
}

fn subsystem(s: &str) -> SubsystemId {
    s.parse().unwrap()
}

#[tokio::test]
async fn committed_writes_appear_together_each_audited() {
    with_each_backend(|store| async move {
        let actor = Actor::cli("alice");
        let v0 = store.registry_version().await.unwrap();
        let tx = store.transaction().await.unwrap();
        let m = member("VN/GOV/A");
        tx.store().add_member(&m, "A", &actor).await.unwrap();
        // A later write of the transaction sees the earlier one.
        tx.store()
            .add_subsystem(&subsystem("VN/GOV/A/S1"), &actor)
            .await
            .unwrap();
        // Nothing is visible outside before the commit.
        assert!(store.list_members().await.unwrap().is_empty());
        tx.commit().await.unwrap();
        assert_eq!(store.list_members().await.unwrap().len(), 1);
        assert_eq!(store.list_subsystems(None).await.unwrap().len(), 1);
        assert_eq!(store.registry_version().await.unwrap(), v0 + 2);
        let audit = store.list_audit(0, 100).await.unwrap();
        let actions: Vec<_> = audit.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(actions, ["member.add", "subsystem.add"]);
        assert!(audit.iter().all(|a| a.actor == "cli:alice"));
        store
    })
    .await;
}

#[tokio::test]
async fn a_failed_write_rolls_back_the_whole_transaction() {
    with_each_backend(|store| async move {
        let actor = Actor::cli("alice");
        let tx = store.transaction().await.unwrap();
        tx.store()
            .add_member(&member("VN/GOV/A"), "A", &actor)
            .await
            .unwrap();
        // Fails inside the database: the member is already there.
        let e = tx
            .store()
            .add_member(&member("VN/GOV/A"), "again", &actor)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::AlreadyExists { .. }), "{e}");
        // Every later write and the commit are refused.
        let later = tx.store().add_group("g", "G", &actor).await.unwrap_err();
        assert!(
            later.to_string().contains("transaction is closed"),
            "{later}"
        );
        let commit = tx.commit().await.unwrap_err();
        assert!(matches!(commit, StoreError::Invalid(_)), "{commit}");
        assert!(store.list_members().await.unwrap().is_empty());
        assert!(store.list_groups().await.unwrap().is_empty());
        assert!(store.list_audit(0, 10).await.unwrap().is_empty());
        assert_eq!(store.registry_version().await.unwrap(), 0);
        store
    })
    .await;
}

#[tokio::test]
async fn rollback_and_drop_leave_nothing() {
    with_each_backend(|store| async move {
        let actor = Actor::cli("alice");
        let tx = store.transaction().await.unwrap();
        tx.store().add_group("g1", "G", &actor).await.unwrap();
        tx.rollback().await.unwrap();
        let tx = store.transaction().await.unwrap();
        tx.store().add_group("g2", "G", &actor).await.unwrap();
        drop(tx);
        assert!(store.list_groups().await.unwrap().is_empty());
        assert!(store.list_audit(0, 10).await.unwrap().is_empty());
        // Transactions do not nest.
        let tx = store.transaction().await.unwrap();
        assert!(tx.store().transaction().await.is_err());
        tx.rollback().await.unwrap();
        store
    })
    .await;
}

#[tokio::test]
async fn other_writers_wait_for_the_transaction() {
    with_each_backend(|store| async move {
        let actor = Actor::cli("alice");
        let tx = store.transaction().await.unwrap();
        tx.store().add_group("first", "G", &actor).await.unwrap();
        let other = store.clone();
        let writer = tokio::spawn(async move {
            other
                .add_group("second", "G", &Actor::cli("bob"))
                .await
                .unwrap();
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !writer.is_finished(),
            "a writer went past the open transaction"
        );
        tx.commit().await.unwrap();
        writer.await.unwrap();
        let audit = store.list_audit(0, 10).await.unwrap();
        let order: Vec<_> = audit.iter().map(|a| a.target.as_str()).collect();
        assert_eq!(order, ["first", "second"]);
        store
    })
    .await;
}
