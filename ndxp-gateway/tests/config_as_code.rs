//! Configuration as code (`management::catalog`): export, diff and apply
//! against real registries. Runs on SQLite and, when
//! `NDXP_TEST_POSTGRES_URL` is set, also on PostgreSQL.
#![allow(clippy::unwrap_used)]

use chrono::{TimeZone, Utc};
use ndxp_core::{InstanceId, ServiceId, SubsystemId};
use ndxp_gateway::management::catalog::{self, CatalogError, CatalogFile, Op, Options};
use ndxp_registry::model::{Actor, Grantee, ServiceUpdate, SubscriptionState};
use ndxp_registry::store::gateway::{
    GatewayServiceState, GatewaySettings, GatewayStore, SubscriptionLimits,
};
use ndxp_registry::store::{RegistryStore, SqlStore, StoreOptions};
use ndxp_test_support::db::{backends, Backend, TestDatabase};

struct Db {
    store: SqlStore,
    db: TestDatabase,
    _dir: tempfile::TempDir,
}

impl Db {
    async fn new(backend: Backend) -> Db {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDatabase::create(backend, dir.path()).await;
        let store = SqlStore::open(&db.url, &StoreOptions::default())
            .await
            .unwrap();
        Db {
            store,
            db,
            _dir: dir,
        }
    }

    async fn close(self) {
        self.store.close().await;
        self.db.drop_now().await;
    }
}

fn vn() -> InstanceId {
    "VN".parse().unwrap()
}

fn sub(s: &str) -> SubsystemId {
    s.parse().unwrap()
}

fn svc(s: &str) -> ServiceId {
    s.parse().unwrap()
}

fn actor() -> Actor {
    Actor::cli("alice")
}

/// A registry with every kind of object the file holds, through the
/// store's ordinary writes.
async fn populate(s: &SqlStore) {
    let a = &actor();
    for (m, name) in [("VN/GOV/BCA", "Bộ Công an"), ("VN/GOV/BTC", "Bộ Tài chính")] {
        s.add_member(&m.parse().unwrap(), name, a).await.unwrap();
    }
    for id in ["VN/GOV/BCA/CSDLDC", "VN/GOV/BTC/THUE", "VN/GOV/BTC/KHOBAC"] {
        s.add_subsystem(&sub(id), a).await.unwrap();
    }
    let v1 = svc("VN/GOV/BCA/CSDLDC/citizen/v1");
    let v2 = svc("VN/GOV/BCA/CSDLDC/citizen/v2");
    s.add_service(&v1, "Citizen lookup", Some(r#"{"openapi":"3.1.0"}"#), a)
        .await
        .unwrap();
    s.add_service(&v2, "Citizen lookup, v2", None, a)
        .await
        .unwrap();
    let dep = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let update = ServiceUpdate {
        deprecated_at: Some(Some(dep)),
        sunset_at: Some(Some(dep + chrono::Duration::days(180))),
        ..ServiceUpdate::default()
    };
    s.update_service(&v1, &update, a).await.unwrap();
    s.add_group("finance", "Finance ministry systems", a)
        .await
        .unwrap();
    // The API accepts an empty description; the file must carry it too.
    s.add_group("empty", "", a).await.unwrap();
    s.add_group_member("finance", &sub("VN/GOV/BTC/THUE"), a)
        .await
        .unwrap();
    s.add_group_member("finance", &sub("VN/GOV/BTC/KHOBAC"), a)
        .await
        .unwrap();
    s.grant_access(&v1, &Grantee::Group("finance".into()), a)
        .await
        .unwrap();
    s.grant_access(&v2, &Grantee::Subsystem(sub("VN/GOV/BTC/THUE")), a)
        .await
        .unwrap();
    let mut settings = GatewaySettings::new("http://127.0.0.1:9000/citizen");
    settings.rate_per_sec = 50;
    settings.burst = 100;
    s.register_gateway_service(&v2, None, None, &settings, a)
        .await
        .unwrap();
    s.set_gateway_service_state(&v2, GatewayServiceState::Published, a)
        .await
        .unwrap();
    let approved = s
        .request_subscription(&v2, &sub("VN/GOV/BTC/THUE"), None, a)
        .await
        .unwrap();
    s.transition_subscription(approved.id, SubscriptionState::Approved, None, a)
        .await
        .unwrap();
    let limits = SubscriptionLimits {
        rate_per_sec: Some(5),
        quota_per_day: Some(10_000),
        burst: None,
    };
    s.set_subscription_limits(approved.id, &limits, a)
        .await
        .unwrap();
    s.request_subscription(&v2, &sub("VN/GOV/BTC/KHOBAC"), Some("please"), a)
        .await
        .unwrap();
    // History that is not configuration: a rejected subscription.
    let rejected = s
        .request_subscription(&v1, &sub("VN/GOV/BTC/KHOBAC"), None, a)
        .await
        .unwrap();
    s.transition_subscription(rejected.id, SubscriptionState::Rejected, None, a)
        .await
        .unwrap();
}

async fn export(s: &SqlStore) -> String {
    catalog::export(s, &vn()).await.unwrap().render().unwrap()
}

async fn audit_len(s: &SqlStore) -> usize {
    s.list_audit(0, 10_000).await.unwrap().len()
}

#[tokio::test]
async fn an_export_applied_to_a_fresh_registry_reproduces_it() {
    for backend in backends() {
        let source = Db::new(backend).await;
        populate(&source.store).await;
        let text = export(&source.store).await;
        assert_eq!(text, export(&source.store).await, "export is stable");
        for needle in [
            "[[members]]",
            "Bộ Công an",
            "[[groups]]",
            "deprecated_at = \"2026-06-01T00:00:00Z\"",
            "[[access]]",
            "group = \"finance\"",
            "[[gateway_services]]",
            "state = \"published\"",
            "[[subscriptions]]",
            "quota_per_day = 10000",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
        assert!(
            !text.contains("rejected"),
            "history is not exported:\n{text}"
        );

        let target = Db::new(backend).await;
        let file = CatalogFile::parse(&text).unwrap();
        let out = catalog::apply(&target.store, &vn(), &file, Options::default(), &actor())
            .await
            .unwrap();
        assert!(out.applied);
        assert_eq!(out.plan.count(Op::Remove), 0);
        assert_eq!(export(&target.store).await, text, "round trip");
        let audit = target.store.list_audit(0, 10_000).await.unwrap();
        assert!(audit.iter().all(|e| e.actor == "cli:alice"));
        assert!(audit.len() >= out.plan.changes.len());

        // Idempotent: a second apply changes nothing and writes nothing.
        let (n, v) = (
            audit_len(&target.store).await,
            target.store.registry_version().await.unwrap(),
        );
        let again = catalog::apply(&target.store, &vn(), &file, Options::default(), &actor())
            .await
            .unwrap();
        assert!(again.plan.is_empty(), "{}", again.plan.text());
        assert!(again.plan.text().contains("no changes"));
        assert!(!again.applied);
        assert_eq!(audit_len(&target.store).await, n);
        assert_eq!(target.store.registry_version().await.unwrap(), v);
        // And on the source itself too.
        let same = catalog::diff(&source.store, &vn(), &file, true)
            .await
            .unwrap();
        assert!(same.is_empty(), "{}", same.text());
        source.close().await;
        target.close().await;
    }
}

#[tokio::test]
async fn diff_shows_changes_dry_run_writes_nothing_and_prune_removes() {
    for backend in backends() {
        let db = Db::new(backend).await;
        populate(&db.store).await;
        let before = export(&db.store).await;
        let edited = before
            .replace("Bộ Tài chính", "Bộ Tài chính (BTC)")
            .replace("rate_per_sec = 50", "rate_per_sec = 60")
            .replace("state = \"requested\"", "state = \"approved\"");
        // Drop the second service's group grant: everything about the
        // group's access right goes.
        let edited = edited.replace(
            "[[access]]\nservice = \"VN/GOV/BCA/CSDLDC/citizen/v1\"\ngroup = \"finance\"\n",
            "",
        );
        assert_ne!(edited, before);
        let file = CatalogFile::parse(&edited).unwrap();
        let plan = catalog::diff(&db.store, &vn(), &file, false).await.unwrap();
        let text = plan.text();
        assert!(text.contains("~ member VN/GOV/BTC"), "{text}");
        assert!(text.contains("rate_per_sec: 50 -> 60"), "{text}");
        assert!(text.contains("state: requested -> approved"), "{text}");
        assert!(text.contains("kept"), "{text}");
        assert_eq!(plan.count(Op::Remove), 0);
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["changes"][0]["op"], "change");

        let n = audit_len(&db.store).await;
        let dry = Options {
            prune: true,
            dry_run: true,
        };
        let out = catalog::apply(&db.store, &vn(), &file, dry, &actor())
            .await
            .unwrap();
        assert!(!out.applied);
        assert_eq!(out.plan.count(Op::Remove), 1, "{}", out.plan.text());
        assert_eq!(export(&db.store).await, before, "a dry run writes nothing");
        assert_eq!(audit_len(&db.store).await, n);

        let prune = Options {
            prune: true,
            dry_run: false,
        };
        catalog::apply(&db.store, &vn(), &file, prune, &actor())
            .await
            .unwrap();
        assert_eq!(export(&db.store).await, file.render().unwrap());
        db.close().await;
    }
}

#[tokio::test]
async fn bad_files_change_nothing() {
    for backend in backends() {
        let db = Db::new(backend).await;
        populate(&db.store).await;
        let before = export(&db.store).await;
        let n = audit_len(&db.store).await;
        // Refused when read, naming the line.
        for (bad, says) in [
            (
                before.replace("format = 1", "format = 1\ncolour = \"red\""),
                "unknown field",
            ),
            (
                before.replace("VN/GOV/BCA/CSDLDC\"", "VN/GOV/BCA//\""),
                "line",
            ),
            (
                before.replace("group = \"finance\"", "group = \"missing\""),
                "group:missing is not in the file",
            ),
            (
                before.replacen("[[subsystems]]\nid = \"VN/GOV/BCA/CSDLDC\"\n", "", 1),
                "not in the file",
            ),
        ] {
            let e = CatalogFile::parse(&bad).unwrap_err();
            assert!(e.is_usage());
            assert!(e.to_string().contains(says), "{e}");
        }
        // Refused by the plan: a published service cannot go back.
        let back = before.replace("state = \"published\"", "state = \"registered\"");
        let e = catalog::apply(
            &db.store,
            &vn(),
            &CatalogFile::parse(&back).unwrap(),
            Options::default(),
            &actor(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, CatalogError::Conflict(_)), "{e}");
        // Another instance's file.
        let other = before.replace("instance = \"VN\"", "instance = \"LA\"");
        let other = CatalogFile::parse(&other);
        assert!(other.is_err(), "members of VN in a file for LA");
        assert_eq!(export(&db.store).await, before);
        assert_eq!(audit_len(&db.store).await, n);
        db.close().await;
    }
}

/// A change the database refuses midway rolls back the ones before it.
#[tokio::test]
async fn a_refusal_midway_rolls_everything_back() {
    let db = Db::new(Backend::Sqlite).await;
    populate(&db.store).await;
    let before = export(&db.store).await;
    let n = audit_len(&db.store).await;
    sqlx::query(
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON subsystem_groups \
         WHEN NEW.code = 'boom' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    )
    .execute(db.store.pool())
    .await
    .unwrap();
    // A new member is added first, then the group fails.
    let text = before.replacen(
        "[[subsystems]]",
        "[[members]]\nid = \"VN/GOV/NEW\"\nname = \"New\"\n\n[[subsystems]]",
        1,
    ) + "\n[[groups]]\ncode = \"boom\"\ndescription = \"x\"\n";
    let file = CatalogFile::parse(&text).unwrap();
    let e = catalog::apply(&db.store, &vn(), &file, Options::default(), &actor())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("group boom"), "{e}");
    assert_eq!(export(&db.store).await, before);
    assert_eq!(audit_len(&db.store).await, n);
    db.close().await;
}
