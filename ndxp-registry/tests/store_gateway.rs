//! The gateway part of the registry store (schema versions 2 and 4), run against
//! SQLite and, when `NDXP_TEST_POSTGRES_URL` is set, PostgreSQL: every
//! write is audited and raises the registry version, a refused write
//! changes nothing, and the snapshot the gateway loads is consistent.
#![allow(clippy::unwrap_used)]

mod store_support;

use ndxp_core::{MemberId, ServiceId, SubsystemId};
use ndxp_registry::model::{Actor, SubscriptionState};
use ndxp_registry::store::gateway::{
    ClientCertificate, GatewayServiceState, GatewaySettings, GatewaySettingsUpdate, GatewayStore,
    SubscriptionLimits,
};
use ndxp_registry::store::{RegistryStore, SqlStore, StoreError};
use store_support::with_each_backend;

fn actor() -> Actor {
    Actor::cli("test")
}

async fn seed(store: &SqlStore) -> (ServiceId, SubsystemId) {
    let a = actor();
    let p: MemberId = "VN/GOV/000.00.00.H29".parse().unwrap();
    let c: MemberId = "VN/GOV/000.00.00.G22".parse().unwrap();
    store.add_member(&p, "provider", &a).await.unwrap();
    store.add_member(&c, "consumer", &a).await.unwrap();
    store
        .add_subsystem(&"VN/GOV/000.00.00.H29/CSDLDC".parse().unwrap(), &a)
        .await
        .unwrap();
    let client: SubsystemId = "VN/GOV/000.00.00.G22/QLHT".parse().unwrap();
    store.add_subsystem(&client, &a).await.unwrap();
    (
        "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1".parse().unwrap(),
        client,
    )
}

#[tokio::test]
async fn gateway_writes_are_audited_versioned_and_all_or_nothing() {
    with_each_backend(|store| async move {
        let (service, client) = seed(&store).await;
        let a = actor();
        let v0 = store.gateway_registry_version().await.unwrap();
        assert_eq!(v0, store.registry_version().await.unwrap());

        // A service new to the catalogue needs a description; refused,
        // nothing is written.
        let settings = GatewaySettings::new("http://127.0.0.1:9000/api");
        let e = store
            .register_gateway_service(&service, None, None, &settings, &a)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{e}");
        assert_eq!(store.gateway_registry_version().await.unwrap(), v0);
        assert!(store.get_service(&service).await.is_err());

        let g = store
            .register_gateway_service(
                &service,
                Some("Citizen lookup"),
                Some(r#"{"openapi":"3.1.0"}"#),
                &settings,
                &a,
            )
            .await
            .unwrap();
        assert_eq!(g.state, GatewayServiceState::Registered);
        assert_eq!(
            store
                .get_service(&service)
                .await
                .unwrap()
                .openapi
                .as_deref(),
            Some(r#"{"openapi":"3.1.0"}"#),
            "the catalogue entry was added in the same transaction"
        );
        let v1 = store.gateway_registry_version().await.unwrap();
        assert_eq!(v1, v0 + 1);
        let audit = store.list_audit(0, 1000).await.unwrap();
        assert_eq!(audit.last().unwrap().action, "gateway.service.register");

        assert!(matches!(
            store
                .register_gateway_service(&service, None, None, &settings, &a)
                .await,
            Err(StoreError::AlreadyExists { .. })
        ));
        // A bad update changes nothing.
        let bad = GatewaySettingsUpdate {
            backend_url: Some("ftp://x".into()),
            ..GatewaySettingsUpdate::default()
        };
        assert!(store
            .update_gateway_service(&service, &bad, &a)
            .await
            .is_err());
        assert_eq!(store.gateway_registry_version().await.unwrap(), v1);
        assert_eq!(
            store.get_gateway_service(&service).await.unwrap().settings,
            settings
        );
        // Lifecycle transitions.
        assert!(matches!(
            store
                .set_gateway_service_state(&service, GatewayServiceState::Registered, &a)
                .await,
            Err(StoreError::InvalidTransition { .. })
        ));
        store
            .set_gateway_service_state(&service, GatewayServiceState::Published, &a)
            .await
            .unwrap();

        // Credentials: the subsystem must exist; rotation raises the generation.
        assert!(store
            .create_gateway_app(
                "ndxpc_x",
                &"VN/GOV/000.00.00.G22/NOPE".parse().unwrap(),
                "h",
                &[],
                &a
            )
            .await
            .is_err());
        let app = store
            .create_gateway_app(
                "ndxpc_1",
                &client,
                "hash1",
                &["10.0.0.0/8".parse().unwrap()],
                &a,
            )
            .await
            .unwrap();
        assert_eq!(app.generation, 1);
        let app = store
            .rotate_gateway_secret("ndxpc_1", "hash2", &a)
            .await
            .unwrap();
        assert_eq!((app.generation, app.secret_hash.as_str()), (2, "hash2"));
        let app = store
            .set_gateway_app_cidrs("ndxpc_1", &[], &a)
            .await
            .unwrap();
        assert!(app.allowed_cidrs.is_empty());

        // Subscriptions: only approved ones reach the snapshot, with limits.
        let sub = store
            .request_subscription(&service, &client, None, &a)
            .await
            .unwrap();
        let snap = store.gateway_snapshot().await.unwrap();
        assert!(snap.subscriptions.is_empty());
        store
            .transition_subscription(sub.id, SubscriptionState::Approved, None, &a)
            .await
            .unwrap();
        let limits = SubscriptionLimits {
            rate_per_sec: Some(5),
            burst: None,
            quota_per_day: Some(100),
        };
        store
            .set_subscription_limits(sub.id, &limits, &a)
            .await
            .unwrap();
        assert_eq!(store.subscription_limits(sub.id).await.unwrap(), limits);
        let snap = store.gateway_snapshot().await.unwrap();
        assert_eq!(
            snap.registry_version,
            store.registry_version().await.unwrap()
        );
        assert_eq!(snap.services.len(), 1);
        assert_eq!(
            snap.services[0].gateway.state,
            GatewayServiceState::Published
        );
        assert_eq!(snap.apps.len(), 1);
        assert_eq!(snap.subscriptions.len(), 1);
        assert_eq!(snap.subscriptions[0].limits, limits);

        // Revoked credentials leave the snapshot; revoking twice is refused.
        store.revoke_gateway_app("ndxpc_1", &a).await.unwrap();
        assert!(matches!(
            store.revoke_gateway_app("ndxpc_1", &a).await,
            Err(StoreError::InvalidTransition { .. })
        ));
        assert!(matches!(
            store.rotate_gateway_secret("ndxpc_1", "h3", &a).await,
            Err(StoreError::InvalidTransition { .. })
        ));
        assert!(store.gateway_snapshot().await.unwrap().apps.is_empty());

        // Removing the service removes its gateway entry and limits.
        store.remove_service(&service, &a).await.unwrap();
        let snap = store.gateway_snapshot().await.unwrap();
        assert!(snap.services.is_empty() && snap.subscriptions.is_empty());
        assert!(matches!(
            store.get_gateway_service(&service).await,
            Err(StoreError::NotFound { .. })
        ));
        store
    })
    .await;
}

fn certificate(fill: char) -> ClientCertificate {
    ClientCertificate {
        sha256: fill.to_string().repeat(64),
        subject: "CN=QLHT client, O=GOV, C=VN".into(),
        not_after: "2030-01-01T00:00:00Z".parse().unwrap(),
    }
}

#[tokio::test]
async fn client_certificates_are_credentials_unique_while_unrevoked() {
    with_each_backend(|store| async move {
        let (_, client) = seed(&store).await;
        let a = actor();
        let cert = certificate('a');
        let v0 = store.gateway_registry_version().await.unwrap();
        let app = store
            .create_gateway_cert_app("ndxpc_c1", &client, &cert, &[], &a)
            .await
            .unwrap();
        assert_eq!(app.certificate.as_ref(), Some(&cert));
        assert!(app.secret_hash.is_empty());
        assert!(store.gateway_registry_version().await.unwrap() > v0);
        let audit = store.list_audit(0, 1000).await.unwrap();
        let last = audit.last().unwrap();
        assert_eq!(last.action, "gateway.app.create");
        assert_eq!(last.detail["certificate_sha256"], cert.sha256);

        // Read back, listed and in the snapshot with its certificate.
        assert_eq!(store.get_gateway_app("ndxpc_c1").await.unwrap(), app);
        let snap = store.gateway_snapshot().await.unwrap();
        assert_eq!(snap.apps.len(), 1);
        assert_eq!(snap.apps[0].certificate.as_ref(), Some(&cert));

        // The same certificate twice while the first is live: refused,
        // and nothing changes.
        let v1 = store.gateway_registry_version().await.unwrap();
        assert!(matches!(
            store
                .create_gateway_cert_app("ndxpc_c2", &client, &cert, &[], &a)
                .await,
            Err(StoreError::AlreadyExists { .. })
        ));
        assert_eq!(store.gateway_registry_version().await.unwrap(), v1);
        // Bad fingerprints are refused before anything is written.
        let mut bad = certificate('a');
        bad.sha256 = "AB".repeat(32);
        assert!(matches!(
            store
                .create_gateway_cert_app("ndxpc_c3", &client, &bad, &[], &a)
                .await,
            Err(StoreError::Invalid(_))
        ));
        // A certificate has no secret to rotate.
        assert!(matches!(
            store.rotate_gateway_secret("ndxpc_c1", "h", &a).await,
            Err(StoreError::Invalid(_))
        ));

        // Rotation: the new certificate, then the old one revoked.
        let next = certificate('b');
        store
            .create_gateway_cert_app("ndxpc_c4", &client, &next, &[], &a)
            .await
            .unwrap();
        store.revoke_gateway_app("ndxpc_c1", &a).await.unwrap();
        let snap = store.gateway_snapshot().await.unwrap();
        assert_eq!(snap.apps.len(), 1);
        assert_eq!(snap.apps[0].certificate.as_ref(), Some(&next));
        // A revoked certificate may be registered again, as new credentials.
        store
            .create_gateway_cert_app("ndxpc_c5", &client, &cert, &[], &a)
            .await
            .unwrap();
        assert_eq!(
            store.list_gateway_apps(Some(&client)).await.unwrap().len(),
            3
        );
        store
    })
    .await;
}
