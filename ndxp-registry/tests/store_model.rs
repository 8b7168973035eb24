//! JSON shapes and state rules of the registry model.
#![allow(clippy::unwrap_used)]

use ndxp_registry::model::{
    Actor, CredentialKind, Grantee, RegistrationState, ServiceUpdate, SubscriptionState,
};
use proptest::prelude::*;
use serde_json::json;

#[test]
fn grantee_json_names_its_kind() {
    let g = Grantee::Subsystem("VN/GOV/000.00.00.G22/QLHT".parse().unwrap());
    assert_eq!(
        serde_json::to_value(&g).unwrap(),
        json!({"subsystem": "VN/GOV/000.00.00.G22/QLHT"})
    );
    let g: Grantee = serde_json::from_value(json!({"group": "ministries"})).unwrap();
    assert_eq!(g, Grantee::Group("ministries".into()));
    // A malformed subsystem id is refused, not stored.
    assert!(serde_json::from_value::<Grantee>(json!({"subsystem": "VN//x"})).is_err());
    assert!(serde_json::from_value::<Grantee>(json!({"team": "x"})).is_err());
}

#[test]
fn credential_kind_and_actor_json() {
    assert_eq!(
        serde_json::to_value(CredentialKind::Operator).unwrap(),
        json!("operator")
    );
    let m = CredentialKind::Member("VN/GOV/000.00.00.H29".parse().unwrap());
    assert_eq!(
        serde_json::to_value(&m).unwrap(),
        json!({"member": "VN/GOV/000.00.00.H29"})
    );
    let a = Actor::member(&"VN/GOV/000.00.00.H29".parse().unwrap());
    assert_eq!(a.as_str(), "member:VN/GOV/000.00.00.H29");
    assert_eq!(serde_json::to_value(&a).unwrap(), json!(a.as_str()));
    assert_eq!(Actor::operator("admin").to_string(), "operator:admin");
    assert_eq!(Actor::cli("root").as_str(), "cli:root");
}

#[test]
fn service_update_distinguishes_absent_from_cleared() {
    let u: ServiceUpdate = serde_json::from_value(json!({"sunset_at": null})).unwrap();
    assert_eq!(u.sunset_at, Some(None), "null clears");
    assert_eq!(u.openapi, None, "absent leaves alone");
    assert_eq!(
        serde_json::to_value(&u).unwrap(),
        json!({"sunset_at": null})
    );
    assert_eq!(
        serde_json::from_value::<ServiceUpdate>(json!({})).unwrap(),
        ServiceUpdate::default()
    );
    let u: ServiceUpdate =
        serde_json::from_value(json!({"deprecated_at": "2026-01-01T00:00:00Z"})).unwrap();
    assert!(matches!(u.deprecated_at, Some(Some(_))));
    assert_eq!(u.description, None);
}

#[test]
fn subscription_transitions() {
    use SubscriptionState::*;
    let all = [Requested, Approved, Rejected, Cancelled];
    let legal: Vec<_> = all
        .iter()
        .flat_map(|a| all.iter().map(move |b| (*a, *b)))
        .filter(|(a, b)| a.can_become(*b))
        .collect();
    assert_eq!(
        legal,
        [
            (Requested, Approved),
            (Requested, Rejected),
            (Requested, Cancelled),
            (Approved, Cancelled)
        ]
    );
}

#[test]
fn states_round_trip_as_text() {
    for s in [
        SubscriptionState::Requested,
        SubscriptionState::Approved,
        SubscriptionState::Rejected,
        SubscriptionState::Cancelled,
    ] {
        assert_eq!(s.as_str().parse::<SubscriptionState>().unwrap(), s);
        assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
    }
    for s in [
        RegistrationState::Pending,
        RegistrationState::Approved,
        RegistrationState::Rejected,
    ] {
        assert_eq!(s.as_str().parse::<RegistrationState>().unwrap(), s);
    }
    assert!("Approved".parse::<SubscriptionState>().is_err());
    assert!("".parse::<RegistrationState>().is_err());
}

proptest! {
    #[test]
    fn state_parsers_never_panic(s in "\\PC{0,16}") {
        let _ = s.parse::<SubscriptionState>();
        let _ = s.parse::<RegistrationState>();
    }

    #[test]
    fn grantee_parser_never_panics(kind in "subsystem|group|x", v in "\\PC{0,40}") {
        let _ = serde_json::from_value::<Grantee>(json!({ kind: v }));
    }
}
