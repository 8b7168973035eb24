//! One test suite for the registry store, run against SQLite (always) and
//! PostgreSQL (when `NDXP_TEST_POSTGRES_URL` is set; each test gets a fresh
//! schema that is dropped afterwards).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use ndxp_core::{MemberId, NodeName, ServiceId, SubsystemId};
use ndxp_registry::model::{
    Actor, CredentialKind, Grantee, NewRegistration, RegistrationKind, RegistrationState,
    ServiceUpdate, StoredConf, SubscriptionState,
};
use ndxp_registry::store::{RegistryStore, SqlStore, StoreError, StoreOptions, SubscriptionFilter};
use ndxp_sign::openssl::{
    asn1::Asn1Time, bn::BigNum, ec, hash::MessageDigest, nid::Nid, pkey, x509,
};
use ndxp_test_support::db::{postgres_url, Backend, PgSchema, TestDatabase};
use tempfile::TempDir;

// ---------------------------------------------------------------- harness

/// A store plus what keeps its database alive.
struct TestDb {
    store: SqlStore,
    url: String,
    _dir: TempDir,
    db: TestDatabase,
}

impl TestDb {
    async fn sqlite() -> TestDb {
        TestDb::create(Backend::Sqlite).await
    }

    async fn postgres() -> Option<TestDb> {
        postgres_url()?;
        Some(TestDb::create(Backend::Postgres).await)
    }

    async fn create(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDatabase::create(backend, dir.path()).await;
        let store = SqlStore::open(&db.url, &opts()).await.unwrap();
        TestDb {
            store,
            url: db.url.clone(),
            _dir: dir,
            db,
        }
    }

    async fn cleanup(self) {
        self.store.close().await;
        self.db.drop_now().await;
    }
}

fn opts() -> StoreOptions {
    StoreOptions {
        max_connections: 4,
        ..StoreOptions::default()
    }
}

/// Declares one test per backend for each suite function.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = super::TestDb::sqlite().await;
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = super::TestDb::postgres().await else { return };
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

suite!(
    members_crud,
    subsystems_crud,
    registration_flow,
    registration_refusals,
    certificate_rotation,
    approval_failing_midway_leaves_nothing,
    node_removal,
    services_crud,
    groups_crud,
    access_rights,
    subscriptions_lifecycle,
    subscription_filters,
    member_removal_cascades,
    subsystem_removal_cascades,
    credentials,
    every_write_is_audited_and_versioned,
    failed_writes_leave_no_trace,
    audit_paging,
    stored_confs,
    snapshot_is_complete,
    migrations_are_idempotent,
    corrupt_rows_are_errors,
    concurrent_writes_serialise,
);

// ---------------------------------------------------------------- fixtures

fn actor() -> Actor {
    Actor::operator("admin")
}

fn mid(s: &str) -> MemberId {
    s.parse().unwrap()
}
fn sid(s: &str) -> SubsystemId {
    s.parse().unwrap()
}
fn svc(s: &str) -> ServiceId {
    s.parse().unwrap()
}
fn node(s: &str) -> NodeName {
    s.parse().unwrap()
}

const H29: &str = "VN/GOV/000.00.00.H29";
const G22: &str = "VN/GOV/000.00.00.G22";
const CSDLDC: &str = "VN/GOV/000.00.00.H29/CSDLDC";
const QLHT: &str = "VN/GOV/000.00.00.G22/QLHT";
const CITIZEN: &str = "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1";

/// A self-signed certificate and its SHA-256 fingerprint.
fn cert(cn: &str) -> (String, String) {
    let group = ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = pkey::PKey::from_ec_key(ec::EcKey::generate(&group).unwrap()).unwrap();
    let mut name = x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = x509::X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let serial = BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap();
    b.set_serial_number(&serial).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let c = b.build();
    let pem = String::from_utf8(c.to_pem().unwrap()).unwrap();
    (pem, ndxp_sign::cert::fingerprint_sha256(&c))
}

fn registration(member: &str, name: &str) -> NewRegistration {
    let (pem, fp) = cert(name);
    NewRegistration {
        member: mid(member),
        node: node(name),
        address: format!("https://{name}.example.vn:8443"),
        auth_cert_pem: pem,
        auth_cert_sha256: fp,
        signed_request: format!("signed:{member}/{name}"),
    }
}

/// Two members, a provider subsystem with one service and a client subsystem.
async fn seed(s: &dyn RegistryStore) {
    let a = actor();
    s.add_member(&mid(H29), "Bộ Công an", &a).await.unwrap();
    s.add_member(&mid(G22), "Bộ Nội vụ", &a).await.unwrap();
    s.add_subsystem(&sid(CSDLDC), &a).await.unwrap();
    s.add_subsystem(&sid(QLHT), &a).await.unwrap();
    s.add_service(&svc(CITIZEN), "citizen lookup", None, &a)
        .await
        .unwrap();
}

fn sha(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

// ---------------------------------------------------------------- tests

async fn members_crud(db: &TestDb) {
    let s = &db.store;
    let a = actor();
    let m = s.add_member(&mid(H29), "Bộ Công an", &a).await.unwrap();
    assert_eq!(m.id, mid(H29));
    assert_eq!(s.get_member(&mid(H29)).await.unwrap(), m);
    s.add_member(&mid(G22), "Bộ Nội vụ", &a).await.unwrap();
    let ids: Vec<_> = s
        .list_members()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id.to_string())
        .collect();
    assert_eq!(ids, [G22, H29]);
    assert!(matches!(
        s.add_member(&mid(H29), "again", &a).await,
        Err(StoreError::AlreadyExists { what: "member", .. })
    ));
    assert!(matches!(
        s.add_member(&mid("VN/COM/0101"), "  ", &a).await,
        Err(StoreError::Invalid(_))
    ));
    s.remove_member(&mid(H29), &a).await.unwrap();
    assert!(matches!(
        s.get_member(&mid(H29)).await,
        Err(StoreError::NotFound { what: "member", .. })
    ));
    assert!(matches!(
        s.remove_member(&mid(H29), &a).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(s.list_members().await.unwrap().len(), 1);
}

async fn subsystems_crud(db: &TestDb) {
    let s = &db.store;
    let a = actor();
    let err = s.add_subsystem(&sid(CSDLDC), &a).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert!(err.to_string().contains(H29), "{err}");
    s.add_member(&mid(H29), "H29", &a).await.unwrap();
    s.add_member(&mid(G22), "G22", &a).await.unwrap();
    let sub = s.add_subsystem(&sid(CSDLDC), &a).await.unwrap();
    s.add_subsystem(&sid("VN/GOV/000.00.00.H29/CCCD"), &a)
        .await
        .unwrap();
    s.add_subsystem(&sid(QLHT), &a).await.unwrap();
    assert_eq!(s.get_subsystem(&sid(CSDLDC)).await.unwrap(), sub);
    assert!(matches!(
        s.add_subsystem(&sid(CSDLDC), &a).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let of_h29: Vec<_> = s
        .list_subsystems(Some(&mid(H29)))
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id.to_string())
        .collect();
    assert_eq!(
        of_h29,
        ["VN/GOV/000.00.00.H29/CCCD", "VN/GOV/000.00.00.H29/CSDLDC"]
    );
    assert_eq!(s.list_subsystems(None).await.unwrap().len(), 3);
    s.remove_subsystem(&sid(CSDLDC), &a).await.unwrap();
    assert!(matches!(
        s.get_subsystem(&sid(CSDLDC)).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.remove_subsystem(&sid(CSDLDC), &a).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn registration_flow(db: &TestDb) {
    let s = &db.store;
    let a = actor();
    s.add_member(&mid(H29), "H29", &a).await.unwrap();
    let member_actor = Actor::member(&mid(H29));
    let new = registration(H29, "node1");
    let req = s.submit_registration(&new, &member_actor).await.unwrap();
    assert_eq!(req.state, RegistrationState::Pending);
    assert_eq!(req.signed_request, new.signed_request);
    assert_eq!(s.get_registration(req.id).await.unwrap(), req);
    assert_eq!(
        s.list_registrations(Some(RegistrationState::Pending))
            .await
            .unwrap(),
        vec![req.clone()]
    );
    assert!(s
        .list_registrations(Some(RegistrationState::Approved))
        .await
        .unwrap()
        .is_empty());
    // No node until approval.
    assert!(s.list_nodes(None).await.unwrap().is_empty());

    let n = s.approve_registration(req.id, &a).await.unwrap();
    assert_eq!(n.member, mid(H29));
    assert_eq!(n.name, node("node1"));
    assert_eq!(n.address, new.address);
    assert_eq!(n.auth_cert_sha256, new.auth_cert_sha256);
    assert_eq!(s.get_node(&mid(H29), &node("node1")).await.unwrap(), n);
    assert_eq!(s.list_nodes(Some(&mid(H29))).await.unwrap(), vec![n]);
    let done = s.get_registration(req.id).await.unwrap();
    assert_eq!(done.state, RegistrationState::Approved);
    assert_eq!(done.decided_by.as_deref(), Some("operator:admin"));
    assert!(done.decided_at.is_some());

    // Wrong states.
    assert!(matches!(
        s.approve_registration(req.id, &a).await,
        Err(StoreError::InvalidTransition { .. })
    ));
    assert!(matches!(
        s.reject_registration(req.id, "late", &a).await,
        Err(StoreError::InvalidTransition { .. })
    ));
    assert!(matches!(
        s.approve_registration(uuid::Uuid::now_v7(), &a).await,
        Err(StoreError::NotFound { .. })
    ));

    // Rejection.
    let r2 = s
        .submit_registration(&registration(H29, "node2"), &member_actor)
        .await
        .unwrap();
    let rejected = s
        .reject_registration(r2.id, "address not reachable", &a)
        .await
        .unwrap();
    assert_eq!(rejected.state, RegistrationState::Rejected);
    assert_eq!(rejected.reason.as_deref(), Some("address not reachable"));
    assert_eq!(s.get_registration(r2.id).await.unwrap(), rejected);
    assert!(matches!(
        s.approve_registration(r2.id, &a).await,
        Err(StoreError::InvalidTransition { .. })
    ));
    assert!(s.get_node(&mid(H29), &node("node2")).await.is_err());
    // A rejected request does not block a new one.
    s.submit_registration(&registration(H29, "node2"), &member_actor)
        .await
        .unwrap();
    assert_eq!(s.list_registrations(None).await.unwrap().len(), 3);
}

async fn registration_refusals(db: &TestDb) {
    let s = &db.store;
    let a = actor();
    s.add_member(&mid(H29), "H29", &a).await.unwrap();
    let first = registration(H29, "node1");
    s.submit_registration(&first, &a).await.unwrap();
    // Duplicate pending request for the same member and node.
    let err = s
        .submit_registration(&registration(H29, "node1"), &a)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");

    // Node already exists.
    let pending = s
        .list_registrations(Some(RegistrationState::Pending))
        .await
        .unwrap();
    s.approve_registration(pending[0].id, &a).await.unwrap();
    // A request for an existing node adds a certificate, so it must keep
    // the node's address.
    let mut moved = registration(H29, "node1");
    moved.address = "https://elsewhere.example.vn:8443".into();
    let err = s.submit_registration(&moved, &a).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.contains("same address")),
        "{err}"
    );
    // A new node needs the signed request.
    let mut unsigned = registration(H29, "node4");
    unsigned.signed_request = String::new();
    let err = s.submit_registration(&unsigned, &a).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.contains("does not exist")),
        "{err}"
    );
    // Certificate already used by a node.
    let mut reuse = registration(H29, "node9");
    reuse.auth_cert_pem = first.auth_cert_pem.clone();
    reuse.auth_cert_sha256 = first.auth_cert_sha256.clone();
    assert!(matches!(
        s.submit_registration(&reuse, &a).await,
        Err(StoreError::AlreadyExists { .. })
    ));

    // Malformed input.
    let mut bad = registration(H29, "node3");
    bad.address = "http://node3.example.vn".into();
    assert!(matches!(
        s.submit_registration(&bad, &a).await,
        Err(StoreError::Invalid(_))
    ));
    let mut bad = registration(H29, "node3");
    bad.auth_cert_sha256 = sha(7);
    let err = s.submit_registration(&bad, &a).await.unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    let mut bad = registration(H29, "node3");
    bad.auth_cert_sha256 = bad.auth_cert_sha256.to_uppercase();
    assert!(matches!(
        s.submit_registration(&bad, &a).await,
        Err(StoreError::Invalid(_))
    ));
    let mut bad = registration(H29, "node3");
    bad.auth_cert_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into();
    assert!(matches!(
        s.submit_registration(&bad, &a).await,
        Err(StoreError::Invalid(_))
    ));

    // Approval needs the member: a request for an unknown member stays pending.
    let orphan = s
        .submit_registration(&registration(G22, "nodeg"), &a)
        .await
        .unwrap();
    let err = s.approve_registration(orphan.id, &a).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(
        s.get_registration(orphan.id).await.unwrap().state,
        RegistrationState::Pending
    );
    s.add_member(&mid(G22), "G22", &a).await.unwrap();
    s.approve_registration(orphan.id, &a).await.unwrap();
    assert_eq!(s.list_nodes(None).await.unwrap().len(), 2);
}

/// A node gets a second certificate through an `add_certificate` request,
/// the snapshot lists both, the old one is removed, the last one cannot be.
async fn certificate_rotation(db: &TestDb) {
    let s = &db.store;
    let a = actor();
    s.add_member(&mid(H29), "H29", &a).await.unwrap();
    let first = registration(H29, "node1");
    let r1 = s.submit_registration(&first, &a).await.unwrap();
    assert_eq!(r1.kind, RegistrationKind::Node);
    let n = s.approve_registration(r1.id, &a).await.unwrap();
    assert_eq!(n.fingerprints(), vec![first.auth_cert_sha256.clone()]);

    // The same member asks again for node1 with certificate B: a request
    // to add a certificate, not a refusal.
    let second = registration(H29, "node1");
    let r2 = s.submit_registration(&second, &a).await.unwrap();
    assert_eq!(r2.kind, RegistrationKind::AddCertificate);
    assert_eq!(
        s.get_registration(r2.id).await.unwrap().kind,
        RegistrationKind::AddCertificate
    );
    let n = s.approve_registration(r2.id, &a).await.unwrap();
    assert_eq!(
        n.fingerprints(),
        vec![
            first.auth_cert_sha256.clone(),
            second.auth_cert_sha256.clone()
        ]
    );
    assert_eq!(n.auth_cert_sha256, second.auth_cert_sha256, "newest is B");
    assert_eq!(
        n.created_at,
        s.get_node(&mid(H29), &node("node1"))
            .await
            .unwrap()
            .created_at
    );
    let snap = s.snapshot().await.unwrap();
    assert_eq!(snap.nodes.len(), 1);
    assert_eq!(snap.nodes[0].fingerprints(), n.fingerprints());
    let mut reuse = registration(H29, "node7");
    reuse.auth_cert_pem = second.auth_cert_pem.clone();
    reuse.auth_cert_sha256 = second.auth_cert_sha256.clone();
    assert!(matches!(
        s.submit_registration(&reuse, &a).await,
        Err(StoreError::AlreadyExists { .. })
    ));

    // Removing: an unknown fingerprint is NotFound, A goes, B stays.
    assert!(matches!(
        s.remove_node_certificate(&mid(H29), &node("node1"), &sha(9), &a)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    let v = s.registry_version().await.unwrap();
    let n = s
        .remove_node_certificate(&mid(H29), &node("node1"), &first.auth_cert_sha256, &a)
        .await
        .unwrap();
    assert_eq!(n.fingerprints(), vec![second.auth_cert_sha256.clone()]);
    assert_eq!(s.registry_version().await.unwrap(), v + 1);
    let audit = s.list_audit(0, 1000).await.unwrap();
    assert_eq!(audit.last().unwrap().action, "node.remove_certificate");
    let snap = s.snapshot().await.unwrap();
    assert_eq!(
        snap.nodes[0].fingerprints(),
        vec![second.auth_cert_sha256.clone()]
    );
    assert_eq!(snap.nodes[0].auth_cert_sha256, second.auth_cert_sha256);
    // The only certificate left cannot be removed; the node stays.
    assert!(matches!(
        s.remove_node_certificate(&mid(H29), &node("node1"), &second.auth_cert_sha256, &a)
            .await,
        Err(StoreError::InvalidTransition { .. })
    ));
    // Certificate A, no longer a node's, may be offered again; removing
    // it (now the newest) points the node back at B.
    let mut again = registration(H29, "node1");
    again.auth_cert_pem = first.auth_cert_pem.clone();
    again.auth_cert_sha256 = first.auth_cert_sha256.clone();
    let r3 = s.submit_registration(&again, &a).await.unwrap();
    s.approve_registration(r3.id, &a).await.unwrap();
    let n = s
        .remove_node_certificate(&mid(H29), &node("node1"), &first.auth_cert_sha256, &a)
        .await
        .unwrap();
    assert_eq!(n.auth_cert_sha256, second.auth_cert_sha256);
    assert_eq!(
        s.get_node(&mid(H29), &node("node1"))
            .await
            .unwrap()
            .auth_cert_sha256,
        second.auth_cert_sha256
    );

    // Removing the node removes its certificates: B may serve a new node.
    s.remove_node(&mid(H29), &node("node1"), &a).await.unwrap();
    let mut b_again = registration(H29, "node2");
    b_again.auth_cert_pem = second.auth_cert_pem.clone();
    b_again.auth_cert_sha256 = second.auth_cert_sha256.clone();
    let r4 = s.submit_registration(&b_again, &a).await.unwrap();
    assert_eq!(r4.kind, RegistrationKind::Node);
    s.approve_registration(r4.id, &a).await.unwrap();
}

async fn approval_failing_midway_leaves_nothing(db: &TestDb) {
    let s = &db.store;
    let a = actor();
    s.add_member(&mid(H29), "H29", &a).await.unwrap();
    // Two pending requests carrying the same certificate for different names:
    // the second approval fails on the node insert, after the request was read.
    let r1 = registration(H29, "node1");
    let mut r2 = registration(H29, "node2");
    r2.auth_cert_pem = r1.auth_cert_pem.clone();
    r2.auth_cert_sha256 = r1.auth_cert_sha256.clone();
    s.submit_registration(&r1, &a).await.unwrap();
    let req2 = s.submit_registration(&r2, &a).await.unwrap();
    let req1 = &s
        .list_registrations(Some(RegistrationState::Pending))
        .await
        .unwrap()[0];
    s.approve_registration(req1.id, &a).await.unwrap();

    let version = s.registry_version().await.unwrap();
    let audit = s.list_audit(0, 1000).await.unwrap().len();
    let err = s.approve_registration(req2.id, &a).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
    assert_eq!(s.registry_version().await.unwrap(), version);
    assert_eq!(s.list_audit(0, 1000).await.unwrap().len(), audit);
    assert_eq!(
        s.get_registration(req2.id).await.unwrap().state,
        RegistrationState::Pending
    );
    assert_eq!(s.list_nodes(None).await.unwrap().len(), 1);
}

async fn node_removal(db: &TestDb) {
    let s = &db.store;
    let a = actor();
    s.add_member(&mid(H29), "H29", &a).await.unwrap();
    let req = s
        .submit_registration(&registration(H29, "node1"), &a)
        .await
        .unwrap();
    s.approve_registration(req.id, &a).await.unwrap();
    assert_eq!(s.snapshot().await.unwrap().nodes.len(), 1);
    s.remove_node(&mid(H29), &node("node1"), &a).await.unwrap();
    assert!(s.snapshot().await.unwrap().nodes.is_empty());
    assert!(matches!(
        s.remove_node(&mid(H29), &node("node1"), &a).await,
        Err(StoreError::NotFound { what: "node", .. })
    ));
    // The member is still there, and the name can be registered again.
    s.get_member(&mid(H29)).await.unwrap();
    s.submit_registration(&registration(H29, "node1"), &a)
        .await
        .unwrap();
}

async fn services_crud(db: &TestDb) {
    let s = &db.store;
    let a = actor();
    assert!(matches!(
        s.add_service(&svc(CITIZEN), "x", None, &a).await,
        Err(StoreError::Invalid(_))
    ));
    s.add_member(&mid(H29), "H29", &a).await.unwrap();
    s.add_subsystem(&sid(CSDLDC), &a).await.unwrap();
    assert!(matches!(
        s.add_service(&svc(CITIZEN), "x", Some("{not json"), &a)
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.add_service(&svc(CITIZEN), "x", Some("[1]"), &a).await,
        Err(StoreError::Invalid(_))
    ));
    let doc = r#"{"openapi":"3.1.0","info":{"title":"citizen","version":"1"}}"#;
    let v1 = s
        .add_service(&svc(CITIZEN), "citizen lookup", Some(doc), &a)
        .await
        .unwrap();
    assert_eq!(v1.openapi.as_deref(), Some(doc));
    assert_eq!(s.get_service(&svc(CITIZEN)).await.unwrap(), v1);
    assert!(matches!(
        s.add_service(&svc(CITIZEN), "again", None, &a).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let v2id = svc("VN/GOV/000.00.00.H29/CSDLDC/citizen/v2");
    s.add_service(&v2id, "citizen lookup v2", None, &a)
        .await
        .unwrap();
    assert_eq!(s.list_services(Some(&sid(CSDLDC))).await.unwrap().len(), 2);
    assert!(s.list_services(Some(&sid(QLHT))).await.unwrap().is_empty());

    let dep = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let sunset = dep + Duration::days(180) + Duration::nanoseconds(123);
    let updated = s
        .update_service(
            &svc(CITIZEN),
            &ServiceUpdate {
                description: Some("old citizen lookup".into()),
                openapi: Some(None),
                deprecated_at: Some(Some(dep)),
                sunset_at: Some(Some(sunset)),
            },
            &a,
        )
        .await
        .unwrap();
    assert_eq!(updated.description, "old citizen lookup");
    assert_eq!(updated.openapi, None);
    assert_eq!(updated.deprecated_at, Some(dep));
    assert_eq!(updated.sunset_at, Some(sunset));
    assert_eq!(s.get_service(&svc(CITIZEN)).await.unwrap(), updated);
    // An empty update changes nothing.
    let same = s
        .update_service(&svc(CITIZEN), &ServiceUpdate::default(), &a)
        .await
        .unwrap();
    assert_eq!(same, updated);
    assert!(matches!(
        s.update_service(
            &svc(CITIZEN),
            &ServiceUpdate {
                openapi: Some(Some("nope".into())),
                ..Default::default()
            },
            &a
        )
        .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.update_service(&svc("VN/X/Y/Z/q/v1"), &ServiceUpdate::default(), &a)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    s.remove_service(&svc(CITIZEN), &a).await.unwrap();
    assert!(matches!(
        s.get_service(&svc(CITIZEN)).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.remove_service(&svc(CITIZEN), &a).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(s.list_services(None).await.unwrap().len(), 1);
}

async fn groups_crud(db: &TestDb) {
    let s = &db.store;
    let a = actor();
    seed(s).await;
    assert!(matches!(
        s.add_group("bad code", "x", &a).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.add_group("", "x", &a).await,
        Err(StoreError::Invalid(_))
    ));
    let g = s
        .add_group("ministries", "all ministries", &a)
        .await
        .unwrap();
    assert!(g.members.is_empty());
    assert!(matches!(
        s.add_group("ministries", "x", &a).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        s.add_group_member("ministries", &sid("VN/GOV/000.00.00.G22/NOPE"), &a)
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.add_group_member("nogroup", &sid(QLHT), &a).await,
        Err(StoreError::NotFound { .. })
    ));
    s.add_group_member("ministries", &sid(QLHT), &a)
        .await
        .unwrap();
    let g = s
        .add_group_member("ministries", &sid(CSDLDC), &a)
        .await
        .unwrap();
    assert_eq!(g.members, vec![sid(QLHT), sid(CSDLDC)]);
    assert!(matches!(
        s.add_group_member("ministries", &sid(QLHT), &a).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(s.get_group("ministries").await.unwrap(), g);
    s.add_group("empty", "", &a).await.unwrap();
    let all = s.list_groups().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].code, "empty");
    assert_eq!(all[1], g);
    let g = s
        .remove_group_member("ministries", &sid(QLHT), &a)
        .await
        .unwrap();
    assert_eq!(g.members, vec![sid(CSDLDC)]);
    assert!(matches!(
        s.remove_group_member("ministries", &sid(QLHT), &a).await,
        Err(StoreError::NotFound { .. })
    ));
    // Removing a group removes the rights granted to it.
    s.grant_access(&svc(CITIZEN), &Grantee::Group("ministries".into()), &a)
        .await
        .unwrap();
    s.remove_group("ministries", &a).await.unwrap();
    assert!(s.list_access_rights(None).await.unwrap().is_empty());
    assert!(matches!(
        s.get_group("ministries").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.remove_group("ministries", &a).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn access_rights(db: &TestDb) {
    let s = &db.store;
    let a = actor();
    seed(s).await;
    s.add_group("ministries", "", &a).await.unwrap();
    let missing = svc("VN/GOV/000.00.00.H29/CSDLDC/other/v1");
    assert!(matches!(
        s.grant_access(&missing, &Grantee::Subsystem(sid(QLHT)), &a)
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.grant_access(
            &svc(CITIZEN),
            &Grantee::Subsystem(sid("VN/GOV/000.00.00.G22/NOPE")),
            &a
        )
        .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.grant_access(&svc(CITIZEN), &Grantee::Group("nogroup".into()), &a)
            .await,
        Err(StoreError::Invalid(_))
    ));
    let r = s
        .grant_access(&svc(CITIZEN), &Grantee::Subsystem(sid(QLHT)), &a)
        .await
        .unwrap();
    s.grant_access(&svc(CITIZEN), &Grantee::Group("ministries".into()), &a)
        .await
        .unwrap();
    assert!(matches!(
        s.grant_access(&svc(CITIZEN), &Grantee::Subsystem(sid(QLHT)), &a)
            .await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let rights = s.list_access_rights(Some(&svc(CITIZEN))).await.unwrap();
    assert_eq!(rights.len(), 2);
    assert_eq!(rights[0].grantee, Grantee::Group("ministries".into()));
    assert_eq!(rights[1], r);
    assert!(s
        .list_access_rights(Some(&missing))
        .await
        .unwrap()
        .is_empty());
    s.revoke_access(&svc(CITIZEN), &Grantee::Subsystem(sid(QLHT)), &a)
        .await
        .unwrap();
    assert!(matches!(
        s.revoke_access(&svc(CITIZEN), &Grantee::Subsystem(sid(QLHT)), &a)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(s.list_access_rights(None).await.unwrap().len(), 1);
}

async fn subscriptions_lifecycle(db: &TestDb) {
    let s = &db.store;
    let a = actor();
    seed(s).await;
    let client = Actor::member(&mid(G22));
    assert!(matches!(
        s.request_subscription(
            &svc("VN/GOV/000.00.00.H29/CSDLDC/x/v1"),
            &sid(QLHT),
            None,
            &client
        )
        .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.request_subscription(
            &svc(CITIZEN),
            &sid("VN/GOV/000.00.00.G22/NOPE"),
            None,
            &client
        )
        .await,
        Err(StoreError::Invalid(_))
    ));
    let sub = s
        .request_subscription(&svc(CITIZEN), &sid(QLHT), Some("for HR"), &client)
        .await
        .unwrap();
    assert_eq!(sub.state, SubscriptionState::Requested);
    assert_eq!(sub.history.len(), 1);
    assert_eq!(sub.history[0].note.as_deref(), Some("for HR"));
    assert_eq!(sub.history[0].actor, "member:VN/GOV/000.00.00.G22");
    assert_eq!(s.get_subscription(sub.id).await.unwrap(), sub);
    assert!(matches!(
        s.request_subscription(&svc(CITIZEN), &sid(QLHT), None, &client)
            .await,
        Err(StoreError::AlreadyExists { .. })
    ));

    let approved = s
        .transition_subscription(sub.id, SubscriptionState::Approved, None, &a)
        .await
        .unwrap();
    assert_eq!(approved.state, SubscriptionState::Approved);
    assert_eq!(s.get_subscription(sub.id).await.unwrap(), approved);
    for bad in [
        SubscriptionState::Approved,
        SubscriptionState::Rejected,
        SubscriptionState::Requested,
    ] {
        let err = s
            .transition_subscription(sub.id, bad, None, &a)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidTransition { .. }), "{err}");
    }
    // Still live: a second request is refused.
    assert!(s
        .request_subscription(&svc(CITIZEN), &sid(QLHT), None, &client)
        .await
        .is_err());
    let cancelled = s
        .transition_subscription(sub.id, SubscriptionState::Cancelled, Some("done"), &client)
        .await
        .unwrap();
    let states: Vec<_> = cancelled.history.iter().map(|e| e.state).collect();
    assert_eq!(
        states,
        [
            SubscriptionState::Requested,
            SubscriptionState::Approved,
            SubscriptionState::Cancelled
        ]
    );
    assert_eq!(s.get_subscription(sub.id).await.unwrap(), cancelled);
    assert!(matches!(
        s.transition_subscription(sub.id, SubscriptionState::Approved, None, &a)
            .await,
        Err(StoreError::InvalidTransition { .. })
    ));

    // After cancellation the client may ask again; that one gets rejected.
    let again = s
        .request_subscription(&svc(CITIZEN), &sid(QLHT), None, &client)
        .await
        .unwrap();
    let rejected = s
        .transition_subscription(again.id, SubscriptionState::Rejected, Some("no basis"), &a)
        .await
        .unwrap();
    assert_eq!(rejected.state, SubscriptionState::Rejected);
    for bad in [SubscriptionState::Approved, SubscriptionState::Cancelled] {
        assert!(matches!(
            s.transition_subscription(again.id, bad, None, &a).await,
            Err(StoreError::InvalidTransition { .. })
        ));
    }
    // Requested -> cancelled is legal too.
    let third = s
        .request_subscription(&svc(CITIZEN), &sid(QLHT), None, &client)
        .await
        .unwrap();
    s.transition_subscription(third.id, SubscriptionState::Cancelled, None, &client)
        .await
        .unwrap();
    assert!(matches!(
        s.get_subscription(uuid::Uuid::now_v7()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.transition_subscription(uuid::Uuid::now_v7(), SubscriptionState::Approved, None, &a)
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn subscription_filters(db: &TestDb) {
    let s = &db.store;
    let a = actor();
    seed(s).await;
    let other = svc("VN/GOV/000.00.00.G22/QLHT/staff/v1");
    s.add_service(&other, "staff", None, &a).await.unwrap();
    let s1 = s
        .request_subscription(&svc(CITIZEN), &sid(QLHT), None, &a)
        .await
        .unwrap();
    let s2 = s
        .request_subscription(&other, &sid(CSDLDC), None, &a)
        .await
        .unwrap();
    let s3 = s
        .request_subscription(&other, &sid(QLHT), None, &a)
        .await
        .unwrap();
    s.transition_subscription(s3.id, SubscriptionState::Approved, None, &a)
        .await
        .unwrap();
    let ids = |v: Vec<ndxp_registry::model::Subscription>| {
        v.into_iter().map(|s| s.id).collect::<Vec<_>>()
    };
    let all = s
        .list_subscriptions(&SubscriptionFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].history.len(), 2, "history comes with the list");
    assert_eq!(
        ids(s
            .list_subscriptions(&SubscriptionFilter {
                client: Some(sid(QLHT)),
                ..Default::default()
            })
            .await
            .unwrap()),
        [s1.id, s3.id]
    );
    assert_eq!(
        ids(s
            .list_subscriptions(&SubscriptionFilter {
                service: Some(other.clone()),
                ..Default::default()
            })
            .await
            .unwrap()),
        [s2.id, s3.id]
    );
    assert_eq!(
        ids(s
            .list_subscriptions(&SubscriptionFilter {
                provider: Some(sid(CSDLDC)),
                ..Default::default()
            })
            .await
            .unwrap()),
        [s1.id]
    );
    assert_eq!(
        ids(s
            .list_subscriptions(&SubscriptionFilter {
                state: Some(SubscriptionState::Approved),
                client: Some(sid(QLHT)),
                ..Default::default()
            })
            .await
            .unwrap()),
        [s3.id]
    );
}

async fn member_removal_cascades(db: &TestDb) {
    let s = &db.store;
    let a = actor();
    seed(s).await;
    // H29: node, pending request, credential. G22 (QLHT) has a right to and a
    // subscription on H29's service, and H29's subsystem is in a group.
    let r = s
        .submit_registration(&registration(H29, "node1"), &a)
        .await
        .unwrap();
    s.approve_registration(r.id, &a).await.unwrap();
    s.submit_registration(&registration(H29, "node2"), &a)
        .await
        .unwrap();
    let g22_req = s
        .submit_registration(&registration(G22, "nodeg"), &a)
        .await
        .unwrap();
    s.create_credential(&CredentialKind::Member(mid(H29)), "h29 api", &sha(1), &a)
        .await
        .unwrap();
    s.create_credential(&CredentialKind::Member(mid(G22)), "g22 api", &sha(2), &a)
        .await
        .unwrap();
    s.grant_access(&svc(CITIZEN), &Grantee::Subsystem(sid(QLHT)), &a)
        .await
        .unwrap();
    let g22svc = svc("VN/GOV/000.00.00.G22/QLHT/staff/v1");
    s.add_service(&g22svc, "staff", None, &a).await.unwrap();
    s.grant_access(&g22svc, &Grantee::Subsystem(sid(CSDLDC)), &a)
        .await
        .unwrap();
    s.grant_access(&g22svc, &Grantee::Subsystem(sid(QLHT)), &a)
        .await
        .unwrap();
    s.add_group("all", "", &a).await.unwrap();
    s.add_group_member("all", &sid(CSDLDC), &a).await.unwrap();
    s.add_group_member("all", &sid(QLHT), &a).await.unwrap();
    s.request_subscription(&svc(CITIZEN), &sid(QLHT), None, &a)
        .await
        .unwrap();
    let kept = s
        .request_subscription(&g22svc, &sid(QLHT), None, &a)
        .await
        .unwrap();
    let before = s.list_audit(0, 1000).await.unwrap().len();

    s.remove_member(&mid(H29), &a).await.unwrap();

    assert!(s.list_subsystems(Some(&mid(H29))).await.unwrap().is_empty());
    assert!(s.list_nodes(None).await.unwrap().is_empty());
    assert_eq!(
        s.list_services(None)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id.to_string())
            .collect::<Vec<_>>(),
        ["VN/GOV/000.00.00.G22/QLHT/staff/v1"]
    );
    let rights = s.list_access_rights(None).await.unwrap();
    assert_eq!(rights.len(), 1);
    assert_eq!(rights[0].grantee, Grantee::Subsystem(sid(QLHT)));
    assert_eq!(s.get_group("all").await.unwrap().members, vec![sid(QLHT)]);
    let subs = s
        .list_subscriptions(&SubscriptionFilter::default())
        .await
        .unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].id, kept.id);
    // Pending requests of H29 are gone; G22's remains.
    let pending = s
        .list_registrations(Some(RegistrationState::Pending))
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, g22_req.id);
    // The approved request stays as history.
    assert_eq!(
        s.get_registration(r.id).await.unwrap().state,
        RegistrationState::Approved
    );
    // Credentials of H29 no longer authenticate; G22's still do.
    assert!(s.find_active_credential(&sha(1)).await.unwrap().is_none());
    assert!(s.find_active_credential(&sha(2)).await.unwrap().is_some());
    // One audit entry for the whole removal.
    let audit = s.list_audit(0, 1000).await.unwrap();
    assert_eq!(audit.len(), before + 1);
    let last = audit.last().unwrap();
    assert_eq!(last.action, "member.remove");
    assert_eq!(last.target, H29);
    assert_eq!(last.detail["nodes"], 1);
    assert_eq!(last.detail["pending_registrations"], 1);
}

async fn subsystem_removal_cascades(db: &TestDb) {
    let s = &db.store;
    let a = actor();
    seed(s).await;
    s.grant_access(&svc(CITIZEN), &Grantee::Subsystem(sid(QLHT)), &a)
        .await
        .unwrap();
    s.add_group("all", "", &a).await.unwrap();
    s.add_group_member("all", &sid(QLHT), &a).await.unwrap();
    s.grant_access(&svc(CITIZEN), &Grantee::Group("all".into()), &a)
        .await
        .unwrap();
    s.request_subscription(&svc(CITIZEN), &sid(QLHT), None, &a)
        .await
        .unwrap();
    s.remove_subsystem(&sid(QLHT), &a).await.unwrap();
    let rights = s.list_access_rights(None).await.unwrap();
    assert_eq!(rights.len(), 1, "the group's right stays");
    assert_eq!(rights[0].grantee, Grantee::Group("all".into()));
    assert!(s.get_group("all").await.unwrap().members.is_empty());
    assert!(s
        .list_subscriptions(&SubscriptionFilter::default())
        .await
        .unwrap()
        .is_empty());
    // Removing the provider removes its service and every right on it.
    s.remove_subsystem(&sid(CSDLDC), &a).await.unwrap();
    assert!(s.list_services(None).await.unwrap().is_empty());
    assert!(s.list_access_rights(None).await.unwrap().is_empty());
    s.get_member(&mid(H29)).await.unwrap();
}

async fn credentials(db: &TestDb) {
    let s = &db.store;
    let a = actor();
    s.add_member(&mid(H29), "H29", &a).await.unwrap();
    let op = s
        .create_credential(
            &CredentialKind::Operator,
            "admin",
            &sha(1),
            &Actor::cli("root"),
        )
        .await
        .unwrap();
    assert_eq!(op.kind, CredentialKind::Operator);
    let m = s
        .create_credential(&CredentialKind::Member(mid(H29)), "h29", &sha(2), &a)
        .await
        .unwrap();
    assert!(matches!(
        s.create_credential(&CredentialKind::Member(mid(G22)), "g22", &sha(3), &a)
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.create_credential(&CredentialKind::Operator, "dup", &sha(1), &a)
            .await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        s.create_credential(&CredentialKind::Operator, "short", "abc", &a)
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        s.find_active_credential(&sha(2)).await.unwrap(),
        Some(m.clone())
    );
    assert_eq!(s.find_active_credential(&sha(9)).await.unwrap(), None);
    assert_eq!(
        s.list_credentials().await.unwrap(),
        vec![op.clone(), m.clone()]
    );
    let revoked = s.revoke_credential(m.id, &a).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(s.find_active_credential(&sha(2)).await.unwrap(), None);
    assert!(matches!(
        s.revoke_credential(m.id, &a).await,
        Err(StoreError::InvalidTransition { .. })
    ));
    assert!(matches!(
        s.revoke_credential(uuid::Uuid::now_v7(), &a).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(s.list_credentials().await.unwrap()[1], revoked);
    // The audit trail never holds the token hash.
    for e in s.list_audit(0, 100).await.unwrap() {
        assert!(!e.detail.to_string().contains(&sha(2)), "{e:?}");
    }
}

async fn every_write_is_audited_and_versioned(db: &TestDb) {
    let s: &dyn RegistryStore = &db.store;
    let a = actor();
    assert_eq!(s.registry_version().await.unwrap(), 0);
    let mut expected: Vec<(&str, String)> = Vec::new();
    let mut version = 0;
    let mut check = |action: &'static str, target: String| {
        expected.push((action, target));
        version += 1;
        version
    };

    s.add_member(&mid(H29), "H29", &a).await.unwrap();
    let v = check("member.add", H29.into());
    assert_eq!(s.registry_version().await.unwrap(), v);
    // Reads do not move the version.
    s.list_members().await.unwrap();
    s.snapshot().await.unwrap();
    s.list_audit(0, 10).await.unwrap();
    assert_eq!(s.registry_version().await.unwrap(), v);

    s.add_member(&mid(G22), "G22", &a).await.unwrap();
    check("member.add", G22.into());
    s.add_subsystem(&sid(CSDLDC), &a).await.unwrap();
    check("subsystem.add", CSDLDC.into());
    s.add_subsystem(&sid(QLHT), &a).await.unwrap();
    check("subsystem.add", QLHT.into());
    s.add_service(&svc(CITIZEN), "c", None, &a).await.unwrap();
    check("service.add", CITIZEN.into());
    s.update_service(&svc(CITIZEN), &ServiceUpdate::default(), &a)
        .await
        .unwrap();
    check("service.update", CITIZEN.into());
    s.add_group("g", "", &a).await.unwrap();
    check("group.add", "g".into());
    s.add_group_member("g", &sid(QLHT), &a).await.unwrap();
    check("group.member.add", "g".into());
    s.remove_group_member("g", &sid(QLHT), &a).await.unwrap();
    check("group.member.remove", "g".into());
    s.grant_access(&svc(CITIZEN), &Grantee::Subsystem(sid(QLHT)), &a)
        .await
        .unwrap();
    check("access.grant", CITIZEN.into());
    s.revoke_access(&svc(CITIZEN), &Grantee::Subsystem(sid(QLHT)), &a)
        .await
        .unwrap();
    check("access.revoke", CITIZEN.into());
    s.remove_group("g", &a).await.unwrap();
    check("group.remove", "g".into());
    let sub = s
        .request_subscription(&svc(CITIZEN), &sid(QLHT), None, &a)
        .await
        .unwrap();
    check("subscription.request", sub.id.to_string());
    s.transition_subscription(sub.id, SubscriptionState::Approved, None, &a)
        .await
        .unwrap();
    check("subscription.approved", sub.id.to_string());
    let req = s
        .submit_registration(&registration(H29, "n1"), &a)
        .await
        .unwrap();
    check("registration.submit", req.id.to_string());
    s.approve_registration(req.id, &a).await.unwrap();
    check("registration.approve", req.id.to_string());
    let req2 = s
        .submit_registration(&registration(H29, "n2"), &a)
        .await
        .unwrap();
    check("registration.submit", req2.id.to_string());
    s.reject_registration(req2.id, "no", &a).await.unwrap();
    check("registration.reject", req2.id.to_string());
    s.remove_node(&mid(H29), &node("n1"), &a).await.unwrap();
    check("node.remove", format!("{H29}/n1"));
    let cred = s
        .create_credential(&CredentialKind::Operator, "op", &sha(5), &a)
        .await
        .unwrap();
    check("credential.create", cred.id.to_string());
    s.revoke_credential(cred.id, &a).await.unwrap();
    check("credential.revoke", cred.id.to_string());
    s.remove_service(&svc(CITIZEN), &a).await.unwrap();
    check("service.remove", CITIZEN.into());
    s.remove_subsystem(&sid(QLHT), &a).await.unwrap();
    check("subsystem.remove", QLHT.into());
    s.remove_member(&mid(H29), &a).await.unwrap();
    let v = check("member.remove", H29.into());

    assert_eq!(s.registry_version().await.unwrap(), v);
    let audit = s.list_audit(0, 1000).await.unwrap();
    let got: Vec<(&str, String)> = audit
        .iter()
        .map(|e| (e.action.as_str(), e.target.clone()))
        .collect();
    let want: Vec<(&str, String)> = expected.clone();
    assert_eq!(got, want);
    let ids: Vec<i64> = audit.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=v).collect::<Vec<_>>(), "gap-free audit ids");
    assert!(audit.iter().all(|e| e.actor == "operator:admin"));
    assert!(audit.windows(2).all(|w| w[0].at <= w[1].at));
}

async fn failed_writes_leave_no_trace(db: &TestDb) {
    let s = &db.store;
    let a = actor();
    seed(s).await;
    let version = s.registry_version().await.unwrap();
    let audit = s.list_audit(0, 1000).await.unwrap();
    let snapshot = s.snapshot().await.unwrap();

    // A selection of refused writes, each failing after the transaction began.
    assert!(s.add_member(&mid(H29), "dup", &a).await.is_err());
    assert!(s.add_subsystem(&sid("VN/X/Y/Z"), &a).await.is_err());
    assert!(s.remove_member(&mid("VN/X/Y"), &a).await.is_err());
    assert!(s
        .grant_access(&svc(CITIZEN), &Grantee::Group("none".into()), &a)
        .await
        .is_err());
    assert!(s
        .add_service(&svc("VN/X/Y/Z/s/v1"), "", None, &a)
        .await
        .is_err());
    assert!(s
        .revoke_access(&svc(CITIZEN), &Grantee::Subsystem(sid(QLHT)), &a)
        .await
        .is_err());
    assert!(s
        .transition_subscription(uuid::Uuid::now_v7(), SubscriptionState::Approved, None, &a)
        .await
        .is_err());
    assert!(s.remove_node(&mid(H29), &node("none"), &a).await.is_err());

    assert_eq!(s.registry_version().await.unwrap(), version);
    assert_eq!(s.list_audit(0, 1000).await.unwrap(), audit);
    assert_eq!(s.snapshot().await.unwrap(), snapshot);
}

async fn audit_paging(db: &TestDb) {
    let s = &db.store;
    let a = Actor::cli("root");
    for i in 0..5 {
        s.add_member(&mid(&format!("VN/COM/m{i}")), "m", &a)
            .await
            .unwrap();
    }
    let page1 = s.list_audit(0, 2).await.unwrap();
    assert_eq!(page1.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2]);
    let page2 = s.list_audit(2, 2).await.unwrap();
    assert_eq!(page2.iter().map(|e| e.id).collect::<Vec<_>>(), [3, 4]);
    let page3 = s.list_audit(4, 2).await.unwrap();
    assert_eq!(page3.len(), 1);
    assert_eq!(page3[0].actor, "cli:root");
    assert_eq!(page3[0].detail["name"], "m");
    assert!(s.list_audit(5, 2).await.unwrap().is_empty());
}

async fn stored_confs(db: &TestDb) {
    let s = &db.store;
    let a = Actor::system("publisher");
    assert_eq!(s.latest_conf().await.unwrap(), None);
    let t = Utc.with_ymd_and_hms(2025, 6, 1, 8, 0, 0).unwrap() + Duration::nanoseconds(42);
    let conf = |version: i64| StoredConf {
        version,
        registry_version: 3,
        document: format!("{{\"v\":{version}}}"),
        created_at: t,
        expires_at: t + Duration::hours(24),
    };
    s.store_conf(&conf(1), &a).await.unwrap();
    s.store_conf(&conf(2), &a).await.unwrap();
    let err = s.store_conf(&conf(2), &a).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
    assert_eq!(s.latest_conf().await.unwrap(), Some(conf(2)));
    assert_eq!(s.conf_by_version(1).await.unwrap(), Some(conf(1)));
    assert_eq!(s.conf_by_version(7).await.unwrap(), None);
    // Publishing is audited but is not a registry change.
    assert_eq!(s.registry_version().await.unwrap(), 0);
    let audit = s.list_audit(0, 10).await.unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].action, "conf.publish");
    assert_eq!(audit[0].actor, "system:publisher");
    assert_eq!(audit[1].target, "2");
}

async fn snapshot_is_complete(db: &TestDb) {
    let s = &db.store;
    let a = actor();
    seed(s).await;
    let r = s
        .submit_registration(&registration(H29, "node1"), &a)
        .await
        .unwrap();
    let n = s.approve_registration(r.id, &a).await.unwrap();
    s.add_group("all", "everyone", &a).await.unwrap();
    s.add_group_member("all", &sid(QLHT), &a).await.unwrap();
    s.grant_access(&svc(CITIZEN), &Grantee::Group("all".into()), &a)
        .await
        .unwrap();
    let snap = s.snapshot().await.unwrap();
    assert_eq!(snap.registry_version, s.registry_version().await.unwrap());
    assert_eq!(snap.members.len(), 2);
    assert_eq!(snap.members[0].member.id, mid(G22));
    assert_eq!(
        snap.members[0]
            .subsystems
            .iter()
            .map(|s| s.id.clone())
            .collect::<Vec<_>>(),
        [sid(QLHT)]
    );
    assert_eq!(snap.members[1].subsystems.len(), 1);
    assert_eq!(snap.nodes, vec![n]);
    assert_eq!(snap.services.len(), 1);
    assert_eq!(snap.groups.len(), 1);
    assert_eq!(snap.groups[0].members, vec![sid(QLHT)]);
    assert_eq!(snap.access_rights.len(), 1);
    // JSON round trip of the whole snapshot.
    let json = serde_json::to_string(&snap).unwrap();
    let back: ndxp_registry::model::RegistrySnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snap);
}

async fn migrations_are_idempotent(db: &TestDb) {
    let s = &db.store;
    s.add_member(&mid(H29), "H29", &actor()).await.unwrap();
    s.migrate().await.unwrap();
    s.migrate().await.unwrap();
    // A second process opening the same database.
    let other = SqlStore::open(&db.url, &opts()).await.unwrap();
    assert_eq!(other.list_members().await.unwrap().len(), 1);
    assert_eq!(other.registry_version().await.unwrap(), 1);
    other.close().await;
}

async fn corrupt_rows_are_errors(db: &TestDb) {
    let s = &db.store;
    s.add_member(&mid(H29), "H29", &actor()).await.unwrap();
    sqlx::query(
        "INSERT INTO members (id, name, created_at) VALUES ('not an id', 'x', 'yesterday')",
    )
    .execute(s.pool())
    .await
    .unwrap();
    let err = s.list_members().await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("not an id"), "{err}");
    sqlx::query("UPDATE members SET id = 'VN/A/B' WHERE name = 'x'")
        .execute(s.pool())
        .await
        .unwrap();
    let err = s.get_member(&mid("VN/A/B")).await.unwrap_err();
    assert!(err.to_string().contains("created_at"), "{err}");
    sqlx::query("INSERT INTO audit_log (id, at, actor, action, target, detail) VALUES (99, '2025-01-01T00:00:00Z', 'a', 'b', 'c', '{oops')")
        .execute(s.pool())
        .await
        .unwrap();
    assert!(matches!(
        s.list_audit(0, 100).await,
        Err(StoreError::Corrupt { .. })
    ));
}

async fn concurrent_writes_serialise(db: &TestDb) {
    let store = Arc::new(db.store.clone());
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.add_member(&mid(&format!("VN/COM/c{i:02}")), "c", &Actor::cli("t"))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(store.registry_version().await.unwrap(), 16);
    let ids: Vec<i64> = store
        .list_audit(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, (1..=16).collect::<Vec<_>>());
    assert_eq!(store.list_members().await.unwrap().len(), 16);
}

// ---------------------------------------------------------------- backend-specific

#[tokio::test]
async fn sqlite_file_is_created_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let store = SqlStore::open(&format!("sqlite:{}", path.display()), &opts())
        .await
        .unwrap();
    assert!(path.exists());
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
    store.close().await;
}

#[tokio::test]
async fn corrupt_sqlite_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.db");
    std::fs::write(
        &path,
        b"this is not a database, just some text of a length\n".repeat(100),
    )
    .unwrap();
    // Private, as a database must be, so that the content is what fails.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let err = SqlStore::open(&format!("sqlite://{}", path.display()), &opts())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("bad.db"), "{msg}");
    assert!(msg.contains("not a database"), "{msg}");
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    for url in ["mysql://x/y", "registry.db", "sqlite:", "http://x"] {
        let err = SqlStore::open(url, &opts()).await.unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{url}: {err}");
    }
    let err = SqlStore::open("redis://u:pw@h/0", &opts())
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("pw"), "{err}");
}

#[tokio::test]
async fn open_returns_a_shared_trait_object() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    let store: Arc<dyn RegistryStore> = ndxp_registry::store::open(&url).await.unwrap();
    store.add_member(&mid(H29), "H29", &actor()).await.unwrap();
    assert_eq!(store.registry_version().await.unwrap(), 1);
}

#[tokio::test]
async fn postgres_processes_migrate_at_once() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    // The schema is already migrated by db; use a fresh one for the race.
    let schema = PgSchema::create(&postgres_url().unwrap()).await;
    let url = schema.url.clone();
    let o = opts();
    let (a, b, c) = tokio::join!(
        SqlStore::open(&url, &o),
        SqlStore::open(&url, &o),
        SqlStore::open(&url, &o)
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    a.add_member(&mid(H29), "H29", &actor()).await.unwrap();
    assert_eq!(b.list_members().await.unwrap().len(), 1);
    assert_eq!(c.registry_version().await.unwrap(), 1);
    for s in [a, b, c] {
        s.close().await;
    }
    schema.drop_now().await;
    db.cleanup().await;
}

#[tokio::test]
async fn sqlite_processes_open_at_once() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("race.db").display());
        let o = opts();
        let (a, b, c) = tokio::join!(
            SqlStore::open(&url, &o),
            SqlStore::open(&url, &o),
            SqlStore::open(&url, &o)
        );
        let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
        a.add_member(&mid(H29), "H29", &actor()).await.unwrap();
        assert_eq!(b.list_members().await.unwrap().len(), 1);
        assert_eq!(c.registry_version().await.unwrap(), 1);
        for s in [a, b, c] {
            s.close().await;
        }
    }
}

#[tokio::test]
async fn sqlite_in_memory_keeps_its_data() {
    let store = SqlStore::open("sqlite::memory:", &opts()).await.unwrap();
    store.add_member(&mid(H29), "H29", &actor()).await.unwrap();
    store.add_subsystem(&sid(CSDLDC), &actor()).await.unwrap();
    assert_eq!(store.list_members().await.unwrap().len(), 1);
    assert_eq!(store.snapshot().await.unwrap().registry_version, 2);
}
