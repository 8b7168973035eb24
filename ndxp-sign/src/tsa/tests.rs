//! Unit tests of the hand-written DER of refusals.

use super::authority::{parse_oid, rejection_der};
use super::*;

#[test]
fn rejection_der_is_parsed_by_openssl() {
    for f in [
        PkiFailureInfo::BadAlg,
        PkiFailureInfo::BadRequest,
        PkiFailureInfo::BadDataFormat,
        PkiFailureInfo::UnacceptedPolicy,
        PkiFailureInfo::SystemFailure,
    ] {
        let der = rejection_der(f, "Nope.");
        let st = response_status(&der).unwrap();
        assert_eq!(st.status, PkiStatus::Rejection);
        assert_eq!(st.failure, vec![f]);
        assert_eq!(st.text, vec!["Nope.".to_string()]);
    }
    let long = "x".repeat(300);
    let st = response_status(&rejection_der(PkiFailureInfo::BadRequest, &long)).unwrap();
    assert_eq!(st.text, vec![long]);
}

#[test]
fn policy_oids_must_be_dotted() {
    assert!(parse_oid("1.2.3").is_ok());
    assert!(matches!(
        parse_oid("sha256"),
        Err(TsaError::BadPolicyOid(..))
    ));
    assert!(matches!(parse_oid("1..2"), Err(TsaError::BadPolicyOid(..))));
    assert!(matches!(parse_oid(""), Err(TsaError::BadPolicyOid(..))));
}
