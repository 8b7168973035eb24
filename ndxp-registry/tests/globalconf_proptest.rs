//! Property tests: the verifier and the payload parser never panic on any
//! input, and every valid document survives serialise → parse and
//! sign → verify unchanged.

#![allow(clippy::unwrap_used)]

mod globalconf_support;

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use globalconf_support::*;
use ndxp_core::{InstanceId, MemberId, ServiceId, SubsystemId};
use ndxp_registry::globalconf::{
    self, ConfAccessRight, ConfAnchor, ConfCa, ConfDocument, ConfError, ConfGrantee, ConfGroup,
    ConfMember, ConfNode, ConfService, FORMAT, JWS_TYP,
};
use ndxp_sign::jws::{self, JwsAlgorithm};
use proptest::prelude::*;
use proptest::sample::Index;

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(Fixture::new)
}

fn anchor() -> &'static ConfAnchor {
    static A: OnceLock<ConfAnchor> = OnceLock::new();
    A.get_or_init(|| fixture().anchor("https://conf.example/globalconf"))
}

fn ca_pem() -> String {
    pem(fixture().pki.root_cert())
}

// A segment without dots, so it can never contain "..".
const SEG: &str = "[A-Za-z0-9][A-Za-z0-9_-]{0,6}";

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..4_000_000_000, 0u32..1_000_000_000)
        .prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap())
}

fn opt_time() -> impl Strategy<Value = Option<DateTime<Utc>>> {
    proptest::option::of(time())
}

/// Provider pick, code, version, description, OpenAPI URL, deprecation.
type RawService = (
    Index,
    String,
    String,
    String,
    Option<String>,
    Option<DateTime<Utc>>,
);

#[derive(Debug, Clone)]
struct Raw {
    instance: String,
    version: u64,
    generated_at: DateTime<Utc>,
    validity_secs: i64,
    members: Vec<(String, String, String, Vec<String>)>,
    nodes: Vec<(Index, String, String, Vec<String>)>,
    with_ca: bool,
    services: Vec<RawService>,
    groups: Vec<Vec<Index>>,
    rights: Vec<(Index, bool, Index)>,
}

fn raw() -> impl Strategy<Value = Raw> {
    let members = prop::collection::vec(
        (SEG, SEG, ".{0,12}", prop::collection::vec(SEG, 0..3)),
        1..4,
    );
    let nodes = prop::collection::vec(
        (
            any::<Index>(),
            SEG,
            "https://[a-z]{1,8}\\.example(:[1-9][0-9]{1,3})?(/[a-z]{0,6})?",
            prop::collection::vec("[0-9a-f]{64}", 0..3),
        ),
        0..4,
    );
    let services = prop::collection::vec(
        (
            any::<Index>(),
            SEG,
            "v[0-9]{1,3}(\\.[0-9]{1,3}){0,2}",
            ".{0,20}",
            proptest::option::of("https://[a-z]{1,8}\\.example/[a-z]{0,8}\\.json"),
            opt_time(),
        ),
        0..4,
    );
    (
        (SEG, 1u64..u64::MAX, time(), 1i64..100_000_000),
        members,
        nodes,
        any::<bool>(),
        services,
        prop::collection::vec(prop::collection::vec(any::<Index>(), 0..3), 0..3),
        prop::collection::vec((any::<Index>(), any::<bool>(), any::<Index>()), 0..5),
    )
        .prop_map(
            |(
                (instance, version, generated_at, validity_secs),
                members,
                nodes,
                with_ca,
                services,
                groups,
                rights,
            )| Raw {
                instance,
                version,
                generated_at,
                validity_secs,
                members,
                nodes,
                with_ca,
                services,
                groups,
                rights,
            },
        )
}

/// Builds a valid document from raw choices: codes get an index prefix so
/// they are unique, references pick existing entries by index.
fn build(r: Raw) -> ConfDocument {
    let instance: InstanceId = r.instance.parse().unwrap();
    let members: Vec<ConfMember> = r
        .members
        .iter()
        .enumerate()
        .map(|(i, (class, code, name, subs))| ConfMember {
            id: format!("{instance}/{class}/{i}{code}").parse().unwrap(),
            name: name.clone(),
            subsystems: subs
                .iter()
                .enumerate()
                .map(|(j, s)| format!("{j}{s}"))
                .collect(),
        })
        .collect();
    let subsystems: Vec<SubsystemId> = members
        .iter()
        .flat_map(|m| m.subsystems.iter().map(|c| m.id.subsystem(c).unwrap()))
        .collect();
    let nodes = r
        .nodes
        .iter()
        .enumerate()
        .map(|(k, (m, name, address, fps))| ConfNode {
            member: m.get(&members).id.clone(),
            name: format!("{k}{name}").parse().unwrap(),
            address: address.clone(),
            auth_cert_sha256: fps.clone(),
        })
        .collect();
    let services: Vec<ConfService> = if subsystems.is_empty() {
        Vec::new()
    } else {
        r.services
            .iter()
            .enumerate()
            .map(
                |(k, (s, code, version, description, openapi_url, deprecated_at))| {
                    let id: ServiceId = format!("{}/{k}{code}/{version}", s.get(&subsystems))
                        .parse()
                        .unwrap();
                    ConfService {
                        id,
                        description: description.clone(),
                        openapi_url: openapi_url.clone(),
                        deprecated_at: *deprecated_at,
                        sunset_at: deprecated_at.map(|d| d + TimeDelta::days(30)),
                    }
                },
            )
            .collect()
    };
    let groups: Vec<ConfGroup> = if subsystems.is_empty() {
        Vec::new()
    } else {
        r.groups
            .iter()
            .enumerate()
            .map(|(k, picks)| ConfGroup {
                code: format!("g{k}"),
                members: picks.iter().map(|p| p.get(&subsystems).clone()).collect(),
            })
            .collect()
    };
    let access_rights = if services.is_empty() || subsystems.is_empty() {
        Vec::new()
    } else {
        r.rights
            .iter()
            .map(|(s, to_group, g)| ConfAccessRight {
                service: s.get(&services).id.clone(),
                grantee: if *to_group && !groups.is_empty() {
                    ConfGrantee::Group(g.get(&groups).code.clone())
                } else {
                    ConfGrantee::Subsystem(g.get(&subsystems).clone())
                },
            })
            .collect()
    };
    let cas = if r.with_ca {
        vec![ConfCa {
            name: "root".into(),
            cert_pem: ca_pem(),
            ocsp_urls: vec!["http://ocsp.example/".into()],
        }]
    } else {
        Vec::new()
    };
    let doc = ConfDocument {
        format: FORMAT.into(),
        instance,
        version: r.version,
        generated_at: r.generated_at,
        expires_at: r.generated_at + TimeDelta::seconds(r.validity_secs),
        members,
        nodes,
        cas,
        tsas: Vec::new(),
        services,
        groups,
        access_rights,
    };
    doc.validate().unwrap();
    doc
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn serialise_then_parse_is_identity(r in raw()) {
        let doc = build(r);
        let json = doc.to_json().unwrap();
        prop_assert_eq!(ConfDocument::from_json(&json).unwrap(), doc);
    }

    #[test]
    fn parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = ConfDocument::from_json(&bytes);
    }

    #[test]
    fn parser_never_panics_on_damaged_documents(
        r in raw(),
        at in any::<Index>(),
        replacement in "[\\x00-\\x7f]{0,3}",
    ) {
        let json = String::from_utf8(build(r).to_json().unwrap()).unwrap();
        let mut i = at.index(json.len());
        while !json.is_char_boundary(i) {
            i -= 1;
        }
        // Replace the character at `i` (if any) with `replacement`.
        let next = json[i..].chars().next().map_or(i, |c| i + c.len_utf8());
        let damaged = format!("{}{replacement}{}", &json[..i], &json[next..]);
        if let Ok(doc) = ConfDocument::from_json(damaged.as_bytes()) {
            // Whatever parses is valid.
            prop_assert!(doc.validate().is_ok());
        }
    }

    #[test]
    fn verify_never_panics_on_strings(s in ".{0,300}") {
        prop_assert!(globalconf::verify(&s, anchor(), fixture().now).is_err());
    }

    #[test]
    fn verify_never_panics_on_jws_shaped_input(
        header in prop::collection::vec(any::<u8>(), 0..64),
        payload in prop::collection::vec(any::<u8>(), 0..128),
        sig in prop::collection::vec(any::<u8>(), 0..80),
        typed in any::<bool>(),
    ) {
        let h = if typed {
            let mut v = header_with(&fixture().chain);
            v["junk"] = serde_json::Value::String(String::from_utf8_lossy(&header).into_owned());
            v.to_string().into_bytes()
        } else {
            header
        };
        let jws = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(h),
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(sig),
        );
        prop_assert!(globalconf::verify(&jws, anchor(), fixture().now).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn signed_arbitrary_payloads_are_malformed_not_panics(
        payload in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let f = fixture();
        let jws = jws::sign(&payload, &f.key, JwsAlgorithm::Es256, &f.chain, Some(JWS_TYP)).unwrap();
        let err = globalconf::verify(&jws, anchor(), f.now).unwrap_err();
        prop_assert!(matches!(err, ConfError::Malformed(_)), "{:?}", err);
    }

    #[test]
    fn sign_then_verify_is_identity(r in raw()) {
        let f = fixture();
        let mut doc = build(r);
        // Put it in the anchor's instance and validity window.
        let vn: InstanceId = "VN".parse().unwrap();
        for m in &mut doc.members {
            m.id = format!("VN/{}/{}", m.id.class(), m.id.code()).parse::<MemberId>().unwrap();
        }
        let rebase = |s: &SubsystemId| -> SubsystemId {
            format!("VN/{}/{}/{}", s.member().class(), s.member().code(), s.code()).parse().unwrap()
        };
        for n in &mut doc.nodes {
            n.member = format!("VN/{}/{}", n.member.class(), n.member.code()).parse().unwrap();
        }
        for s in &mut doc.services {
            s.id = format!("{}/{}/{}", rebase(s.id.subsystem()), s.id.code(), s.id.version()).parse().unwrap();
        }
        for g in &mut doc.groups {
            for m in &mut g.members {
                *m = rebase(m);
            }
        }
        for a in &mut doc.access_rights {
            a.service = format!("{}/{}/{}", rebase(a.service.subsystem()), a.service.code(), a.service.version()).parse().unwrap();
            if let ConfGrantee::Subsystem(s) = &mut a.grantee {
                *s = rebase(s);
            }
        }
        doc.instance = vn;
        doc.generated_at = f.now - TimeDelta::minutes(1);
        doc.expires_at = f.now + TimeDelta::hours(1);
        let jws = globalconf::sign(&doc, &f.key, &f.chain).unwrap();
        prop_assert_eq!(globalconf::verify(&jws, anchor(), f.now).unwrap(), doc);
    }
}
