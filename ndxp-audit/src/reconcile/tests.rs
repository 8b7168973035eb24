use chrono::{TimeZone, Utc};
use ndxp_core::TransactionId;

use super::*;

fn id(n: u64) -> TransactionId {
    let b = uuid::Builder::from_unix_timestamp_millis(1_700_000_000_000, &{
        let mut r = [0u8; 10];
        r[2..].copy_from_slice(&n.to_be_bytes());
        r
    });
    TransactionId::from_uuid(b.into_uuid()).unwrap()
}

#[test]
fn digest_is_order_independent_and_counts_repeats() {
    let (a, b, c) = (id(1), id(2), id(3));
    assert_eq!(IdSetDigest::of([&a, &b, &c]), IdSetDigest::of([&c, &a, &b]));
    assert_ne!(IdSetDigest::of([&a, &b]), IdSetDigest::of([&a, &c]));
    assert_ne!(IdSetDigest::of([&a, &a]), IdSetDigest::EMPTY);
    assert_ne!(IdSetDigest::of([&a, &a, &b]), IdSetDigest::of([&b]));
    assert_eq!(IdSetDigest::of([]), IdSetDigest::EMPTY);
}

#[test]
fn digest_hex_round_trips_and_rejects_junk() {
    let d = IdSetDigest::of([&id(7)]);
    assert_eq!(d.to_string().parse::<IdSetDigest>().unwrap(), d);
    assert!("zz".parse::<IdSetDigest>().is_err());
    assert!(d.to_string().to_uppercase().parse::<IdSetDigest>().is_err());
    assert!("0".repeat(63).parse::<IdSetDigest>().is_err());
}

#[test]
fn periods_truncate_and_reject_empty() {
    let t = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
    let h = Period::hour(t);
    assert_eq!(
        h.start(),
        Utc.with_ymd_and_hms(2026, 3, 4, 5, 0, 0).unwrap()
    );
    assert_eq!(h.end(), Utc.with_ymd_and_hms(2026, 3, 4, 6, 0, 0).unwrap());
    let d = Period::day(t);
    assert_eq!(
        d.start(),
        Utc.with_ymd_and_hms(2026, 3, 4, 0, 0, 0).unwrap()
    );
    assert!(Period::new(t, t).is_err());
    let bad = r#"{"start":"2026-01-02T00:00:00Z","end":"2026-01-01T00:00:00Z"}"#;
    assert!(serde_json::from_str::<Period>(bad).is_err());
}

#[test]
fn status_classes() {
    assert_eq!(Outcome::from_status(200), Outcome::Ok);
    assert_eq!(Outcome::from_status(404), Outcome::ClientError);
    assert_eq!(Outcome::from_status(502), Outcome::ServerError);
    assert_eq!(Outcome::from_status(504), Outcome::Timeout);
}

#[test]
fn csv_quotes_when_needed() {
    let mut s = String::new();
    push_csv_field(&mut s, "a,b");
    s.push('|');
    push_csv_field(&mut s, "say \"hi\"");
    s.push('|');
    push_csv_field(&mut s, "plain");
    assert_eq!(s, "\"a,b\"|\"say \"\"hi\"\"\"|plain");
}
