//! Identifier parsing: round trips and every malformed class.
#![allow(clippy::unwrap_used)]

use ndxp_core::id::{IdError, MemberId, ServiceId, SubsystemId, Version};
use ndxp_core::InstanceId;
use proptest::prelude::*;

fn segment() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9_-]{0,20}(\\.[A-Za-z0-9_-]{1,10}){0,3}"
        .prop_filter("segment length", |s| s.len() <= 64)
}

fn version() -> impl Strategy<Value = String> {
    "v[0-9]{1,4}(\\.[0-9]{1,3}){0,2}"
}

proptest! {
    #[test]
    fn service_round_trips(parts in proptest::collection::vec(segment(), 5), v in version()) {
        let text = format!("{}/{}", parts.join("/"), v);
        let s: ServiceId = text.parse().unwrap();
        prop_assert_eq!(s.to_string(), text.clone());
        prop_assert_eq!(s.to_string().parse::<ServiceId>().unwrap(), s.clone());
        let json = serde_json::to_string(&s).unwrap();
        prop_assert_eq!(serde_json::from_str::<ServiceId>(&json).unwrap(), s);
    }

    #[test]
    fn member_and_subsystem_round_trip(parts in proptest::collection::vec(segment(), 4)) {
        let m = parts[..3].join("/");
        prop_assert_eq!(m.parse::<MemberId>().unwrap().to_string(), m);
        let s = parts.join("/");
        let sub: SubsystemId = s.parse().unwrap();
        prop_assert_eq!(sub.to_string(), s);
        prop_assert_eq!(sub.member().subsystem(sub.code()).unwrap(), sub);
    }

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,80}") {
        let _ = s.parse::<ServiceId>();
        let _ = s.parse::<MemberId>();
        let _ = s.parse::<SubsystemId>();
        if let Ok(x) = s.parse::<ServiceId>() {
            prop_assert_eq!(x.to_string(), s);
        }
    }

    #[test]
    fn one_bad_byte_is_rejected(parts in proptest::collection::vec(segment(), 3),
                                pos in 0usize..3,
                                bad in prop::sample::select(vec![" ", "%2F", "\t", "é", "*", ":", "\u{0}", "Đ"])) {
        let mut p = parts.clone();
        p[pos].push_str(bad);
        let text = p.join("/");
        let err = text.parse::<MemberId>().unwrap_err();
        prop_assert!(matches!(err, IdError::BadChar { .. }), "{err:?}");
    }
}

fn err(s: &str) -> String {
    s.parse::<ServiceId>().unwrap_err().to_string()
}

#[test]
fn malformed_classes_have_clear_messages() {
    assert!(err("").contains("empty"));
    assert!(err("VN/GOV//CSDLDC/citizen/v1").contains("empty member code"));
    assert!(err("VN/GOV/000.00.00.H29/CSDLDC/citizen/v1/").contains("found 7"));
    assert!(err("VN/GOV/000.00.00.H29/CSDLDC/v1").contains("found 5"));
    assert!(err("VN/GOV/000.00.00.H29/CSDLDC/citizen/1").contains("v1, v2 or v1.1"));
    assert!(err("VN/GOV/000.00.00.H29/CSDLDC/citizen/v1.").contains("v1, v2 or v1.1"));
    assert!(err("VN/GOV/000.00.00.H29/CSDL DC/citizen/v1").contains("whitespace"));
    assert!(err("VN/GOV/000.00.00%2EH29/CSDLDC/citizen/v1").contains("percent-escape"));
    assert!(err("VN/GOV/000.00.00.H29/CSDLĐC/citizen/v1").contains("non-ASCII"));
    assert!(err("VN/GOV/000..00.H29/CSDLDC/citizen/v1").contains("'..'"));
    assert!(err("VN/GOV/.hidden/CSDLDC/citizen/v1").contains("not first"));
    let long = "a".repeat(65);
    assert!(err(&format!("VN/GOV/{long}/CSDLDC/citizen/v1")).contains("65 bytes"));
    assert!(" VN".parse::<InstanceId>().is_err());
    assert!("VN".parse::<InstanceId>().is_ok());
}

#[test]
fn split_path_takes_the_service_and_leaves_the_rest() {
    let (s, rest) =
        ServiceId::split_path("VN/GOV/000.00.00.H29/CSDLDC/citizen/v1/persons/001099012345")
            .unwrap();
    assert_eq!(s.to_string(), "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1");
    assert_eq!(rest, "/persons/001099012345");
    let (_, rest) = ServiceId::split_path("VN/GOV/000.00.00.H29/CSDLDC/citizen/v1").unwrap();
    assert_eq!(rest, "");
    assert!(ServiceId::split_path("VN/GOV/000.00.00.H29/CSDLDC").is_err());
}

#[test]
fn versions_order_numerically() {
    let v = |s: &str| s.parse::<Version>().unwrap();
    assert!(v("v2") < v("v10"));
    assert!(v("v1") < v("v1.1"));
    assert!(v("v1.9") < v("v1.10"));
}
