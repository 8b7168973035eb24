//! Unit tests of the hand-written serializers, parsers and key contexts.

use http::header::{HeaderMap, HeaderValue};
use openssl::pkey::PKey;
use sfv::{BareItem, FieldType, Item, KeyRef, List, ListEntry};

use super::base::{form_encode, form_urlencoded_pairs};
use super::params::ParamName;
use super::verify::parse_dict_field;
use super::*;

use sfv::{InnerList, Parameters};

// The sfv-based serializers the hand-written ones replace; kept as an
// oracle.
fn key_of(s: &'static str) -> sfv::Key {
    KeyRef::from_str(s).unwrap().to_owned()
}

fn sfv_item(c: &Component) -> Option<Item> {
    let name = sfv::String::from_string(c.name.clone()).ok()?;
    let mut params = Parameters::new();
    for p in &c.params {
        let value = match p {
            ComponentParam::Key(v) | ComponentParam::Name(v) => {
                BareItem::String(sfv::String::from_string(v.clone()).ok()?)
            }
            _ => BareItem::Boolean(true),
        };
        if params.insert(key_of(p.key()), value).is_some() {
            return None;
        }
    }
    Some(Item::with_params(BareItem::String(name), params))
}

fn sfv_params(sp: &SignatureParams) -> Option<String> {
    let items = sp
        .components
        .iter()
        .map(sfv_item)
        .collect::<Option<Vec<_>>>()?;
    let mut params = Parameters::new();
    let string = |s: &str| {
        sfv::String::from_string(s.to_owned())
            .ok()
            .map(BareItem::String)
    };
    let int = |v: i64| sfv::Integer::try_from(v).ok().map(BareItem::Integer);
    for p in &sp.order {
        let (k, v) = match p {
            ParamName::Created => ("created", int(sp.created?)?),
            ParamName::Expires => ("expires", int(sp.expires?)?),
            ParamName::Nonce => ("nonce", string(sp.nonce.as_deref()?)?),
            ParamName::Alg => ("alg", string(sp.alg?.as_str())?),
            ParamName::Keyid => ("keyid", string(sp.keyid.as_deref()?)?),
            ParamName::Tag => ("tag", string(sp.tag.as_deref()?)?),
        };
        params.insert(key_of(k), v);
    }
    let list: List = vec![ListEntry::InnerList(InnerList::with_params(items, params))];
    list.serialize()
}

#[test]
fn serializers_match_sfv() {
    let components = [
        Component::method(),
        Component::query_param("Pet"),
        Component::field("content-digest"),
        Component::request_signature("sig1"),
        Component::field("x").sf().bs().req(),
        Component::field("x").key("a\\b\"c"),
        Component::new("with space"),
        Component::new(""),
        Component::new("bad\u{7f}"),
        Component::new("caf\u{e9}"),
        Component::new("tab\t"),
        Component::field("x").key("\n"),
        Component::field("x").sf().sf(),
        Component::field("x").key("a").key("a"),
        Component::field("x").key("\u{1}").key("a").key("a"),
    ];
    for c in &components {
        let ours = c.identifier().ok();
        let theirs = sfv_item(c).map(|i| i.serialize());
        assert_eq!(ours, theirs, "{c:?}");
    }
    let base = SignatureParams::new(components[..5].to_vec());
    let cases = [
        SignatureParams::new(Vec::new()),
        base.clone(),
        base.clone()
            .with_keyid("k\"1")
            .with_created(1_618_884_473)
            .with_alg(Algorithm::RsaPssSha512)
            .with_nonce("n\\")
            .with_expires(-5)
            .with_tag("t"),
        base.clone()
            .with_created(999_999_999_999_999)
            .with_expires(-999_999_999_999_999),
        base.clone().with_created(1_000_000_000_000_000),
        base.clone().with_expires(i64::MIN),
        base.clone().with_nonce("\u{0}"),
        base.clone().with_tag("\u{e9}"),
        base.clone().with_keyid("\u{7f}"),
        SignatureParams::new(vec![Component::new("\u{1}")]).with_created(1),
    ];
    for sp in &cases {
        assert_eq!(sp.serialize().ok(), sfv_params(sp), "{sp:?}");
        if let Ok(s) = sp.serialize() {
            assert_eq!(SignatureParams::parse(&s).unwrap(), *sp);
        }
    }
}

/// `parse_signature_headers` as it was: full `sfv` dictionaries.
fn parse_signature_headers_sfv(
    headers: &HeaderMap,
    label: &str,
    max: usize,
) -> Result<(SignatureParams, Vec<u8>)> {
    let inputs = parse_dict_field(headers, SIGNATURE_INPUT, max)?
        .ok_or(SignatureError::MissingHeader(SIGNATURE_INPUT))?;
    let sigs = parse_dict_field(headers, SIGNATURE, max)?
        .ok_or(SignatureError::MissingHeader(SIGNATURE))?;
    let entry = inputs
        .get(label)
        .ok_or_else(|| SignatureError::UnknownLabel(label.to_owned()))?;
    let params = SignatureParams::from_entry(entry)?;
    let sig = match sigs.get(label) {
        Some(ListEntry::Item(item)) => match &item.bare_item {
            BareItem::ByteSequence(b) => b.clone(),
            _ => return Err(SignatureError::MissingSignatureValue(label.to_owned())),
        },
        _ => return Err(SignatureError::MissingSignatureValue(label.to_owned())),
    };
    Ok((params, sig))
}

#[test]
fn signature_header_parsing_matches_sfv_dictionaries() {
    let inputs: &[&[&str]] = &[
        &[r#"sig=("@method" "content-digest");created=1;keyid="k";alg="rsa-v1_5-sha256""#],
        &[
            r#"a=("x"), sig=("@method";req "x";key="a\"b";sf "@query-param";name="n");nonce="n";tag="t";expires=5"#,
        ],
        &[r#"sig=("a"), sig=("b";bs);created=2"#],
        &[r#"sig=("a")"#, r#"other=("b"), sig=("c" "d")"#],
        &[r#"sig=("a");created=1;keyid="k";created=2"#],
        &[r#"sig=("a");created="x";created=3"#],
        &[r#"sig=("a");created=3;created="x""#],
        &[r#"sig=("a";sf=?0)"#],
        &[r#"sig=("a";sf;sf=?0)"#],
        &[r#"sig=("a";sf=?0;sf)"#],
        &[r#"sig=("a";foo=1;bar=2;foo=3)"#],
        &[r#"sig=("a";key=tok)"#],
        &[r#"sig=(a)"#],
        &[r#"sig=(1 "b")"#],
        &[r#"sig="a""#],
        &[r#"sig=("a"), sig="a""#],
        &[r#"sig="a", sig=("a")"#],
        &[r#"sig=("a");unknown=1"#],
        &[r#"sig=("a");alg="hs2019""#],
        &[r#"sig=("a");alg=rsa"#],
        &[r#"sig=("a");keyid=:AA==:"#],
        &[r#"sig=("a");created=1.5"#],
        &[r#"sig"#],
        &[r#"other=("a")"#],
        &[r#"sig=("a""#],
        &[r#"sig=("a");created=@1"#],
        &[r#"sig=("a");nonce=%"x""#],
        &[r#"sig=();created=1"#],
        &[r#"SIG=("a")"#],
    ];
    let sigs: &[&[&str]] = &[
        &["sig=:AAEC:"],
        &["sig=:AAEC:, sig=:AQ==:"],
        &["sig=:AAEC:;p=1"],
        &["sig=(:AA==:)"],
        &["sig=tok"],
        &["other=:AA==:"],
        &["sig=:AAEC:", "x=1, sig=:AgI=:"],
        &["sig=:AAE"],
        &["sig=:AA==:, sig=1"],
        &["sig=1, sig=:AA==:"],
    ];
    let mut n = 0;
    for input in inputs {
        for sig in sigs {
            for (with_input, with_sig) in [(true, true), (false, true), (true, false)] {
                let mut headers = HeaderMap::new();
                if with_input {
                    for v in *input {
                        headers.append(SIGNATURE_INPUT, HeaderValue::from_str(v).unwrap());
                    }
                }
                if with_sig {
                    for v in *sig {
                        headers.append(SIGNATURE, HeaderValue::from_str(v).unwrap());
                    }
                }
                for max in [usize::MAX, 20] {
                    let ours = parse_signature_headers(&headers, "sig", max);
                    let theirs = parse_signature_headers_sfv(&headers, "sig", max);
                    match (&ours, &theirs) {
                        (Ok(a), Ok(b)) => assert_eq!(a, b, "{input:?} {sig:?}"),
                        (Err(a), Err(b)) => {
                            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{input:?} {sig:?}")
                        }
                        _ => panic!("{input:?} {sig:?}: {ours:?} vs {theirs:?}"),
                    }
                    n += usize::from(ours.is_ok());
                }
            }
        }
    }
    assert!(n > 20, "too few successful cases: {n}");
}

#[test]
fn pooled_contexts_survive_failures_and_threads() {
    let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    for alg in [Algorithm::RsaV15Sha256, Algorithm::RsaPssSha512] {
        let sk = SigningKey::with_algorithm(rsa.clone(), alg, "k").unwrap();
        let vk = sk.verifying_key().unwrap();
        let sig = sk.sign_bytes(b"base").unwrap();
        vk.verify_bytes(b"base", &sig).unwrap();
        // Failures (wrong data, wrong length, garbage) in between do not
        // poison the reused contexts.
        assert!(matches!(
            vk.verify_bytes(b"other", &sig),
            Err(SignatureError::InvalidSignature)
        ));
        assert!(matches!(
            vk.verify_bytes(b"base", &sig[1..]),
            Err(SignatureError::InvalidSignature)
        ));
        assert!(vk.verify_bytes(b"base", &[0xff; 256]).is_err());
        vk.verify_bytes(b"base", &sig).unwrap();
        std::thread::scope(|scope| {
            for t in 0..4u8 {
                let (sk, vk) = (sk.clone(), vk.clone());
                scope.spawn(move || {
                    for i in 0..8u8 {
                        let data = [t, i];
                        let sig = sk.sign_bytes(&data).unwrap();
                        vk.verify_bytes(&data, &sig).unwrap();
                        assert!(vk.verify_bytes(&[i, t, 0], &sig).is_err());
                    }
                });
            }
        });
    }
}

#[test]
fn rsa_signatures_of_the_wrong_length_never_verify() {
    // A PSS signature whose first octet is zero is the same integer without
    // it; RFC 8017 requires exactly k octets. Sign until such a signature
    // turns up (about one in 256), then check both shortened and padded forms.
    let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let sk = SigningKey::with_algorithm(rsa, Algorithm::RsaPssSha512, "k").unwrap();
    let vk = sk.verifying_key().unwrap();
    let (data, sig) = (0u32..)
        .map(|i| {
            let data = i.to_be_bytes();
            (data, sk.sign_bytes(&data).unwrap())
        })
        .find(|(_, sig)| sig[0] == 0)
        .unwrap();
    vk.verify_bytes(&data, &sig).unwrap();
    assert!(matches!(
        vk.verify_bytes(&data, &sig[1..]),
        Err(SignatureError::InvalidSignature)
    ));
    let mut padded = vec![0u8];
    padded.extend_from_slice(&sig);
    assert!(matches!(
        vk.verify_bytes(&data, &padded),
        Err(SignatureError::InvalidSignature)
    ));
}

#[test]
fn form_encoding_matches_rfc_examples() {
    let pairs = form_urlencoded_pairs(
        "var=this%20is%20a%20big%0Amultiline%20value&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something",
    );
    let enc: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (form_encode(k), form_encode(v)))
        .collect();
    assert_eq!(
        enc[0],
        (
            "var".into(),
            "this%20is%20a%20big%0Amultiline%20value".into()
        )
    );
    assert_eq!(enc[1], ("bar".into(), "with%20plus%20whitespace".into()));
    assert_eq!(enc[2], ("fa%C3%A7ade%22%3A%20".into(), "something".into()));
}

#[test]
fn truncated_percent_escape_is_kept() {
    let pairs = form_urlencoded_pairs("a=%4&b=%&c=%zz");
    assert_eq!(pairs[0].1, "%4");
    assert_eq!(pairs[1].1, "%");
    assert_eq!(pairs[2].1, "%zz");
}
