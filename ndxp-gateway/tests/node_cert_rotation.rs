//! Rotating a node's authentication (TLS) certificate without an outage,
//! through the management API: a node registered with certificate A gets
//! certificate B (by the member's bearer token, and by a signed
//! registration request as `ndxp-node register` sends it), the operator
//! approves, the global configuration lists both, A is removed and the
//! next configuration lists only B. Refusals: another member (403), a
//! certificate of another member's node (403), a certificate of another
//! node or from an untrusted CA (400), removing the last certificate (409). SQLite, and PostgreSQL when
//! `NDXP_TEST_POSTGRES_URL` is set.
#![allow(clippy::unwrap_used)]

mod management_support;

use management_support::{assert_problem, backends, Env, G22, H29};
use ndxp_core::{MemberId, NodeName};
use ndxp_test_support::pki::{init_pki, node_auth_cert, pem};
use serde_json::{json, Value};

const NODE: &str = "node-h29";
const NODE_PATH: &str = "/api/v1/nodes/VN/GOV/000.00.00.H29/node-h29";
const ADDRESS: &str = "https://127.0.0.1:8202";

fn fingerprints(env_conf: &ndxp_registry::globalconf::ConfDocument) -> Vec<String> {
    env_conf
        .node(&H29.parse().unwrap(), &NODE.parse().unwrap())
        .unwrap()
        .auth_cert_sha256
        .clone()
}

/// The member (by `token`) adds authentication certificate `pem` to its
/// node.
async fn add_certificate(env: &Env, token: &str, pem: &str) -> (u16, Value) {
    let path = format!("{NODE_PATH}/certificates");
    let body = json!({ "auth_cert_pem": pem });
    env.call("POST", &path, Some(token), Some(body)).await
}

/// The member (by `token`) removes the certificate with fingerprint `fp`.
async fn remove_certificate(env: &Env, token: &str, fp: &str) -> (u16, Value) {
    let path = format!("{NODE_PATH}/certificates/{fp}");
    env.call("DELETE", &path, Some(token), None).await
}

/// An authentication certificate from the platform's CA, followed by the
/// intermediate CA certificate (as a member installs `auth.pem`).
fn auth_pem(env: &Env, member: &str, node: &str) -> String {
    let m: MemberId = member.parse().unwrap();
    let n: NodeName = node.parse().unwrap();
    let mut text = pem(&node_auth_cert(&env.pki, &m, &n));
    for ca in &env.member_keys(member).sign_chain[1..] {
        text.push_str(&pem(ca));
    }
    text
}

#[tokio::test]
async fn node_certificate_rotation_without_removing_the_node() {
    for b in backends() {
        let env = Env::start(b).await;
        let h29 = env.add_member_with_token(H29, "Bộ Công an").await;
        let g22 = env.add_member_with_token(G22, "Bộ Nội vụ").await;

        // Registered with certificate A.
        let keys = env.member_keys(H29);
        let (s, v) = env
            .submit_registration(env.registration(&keys, NODE, ADDRESS))
            .await;
        assert_eq!((s, v["kind"].as_str()), (201, Some("node")), "{v}");
        let node = env.approve_registration(v["id"].as_str().unwrap()).await;
        let fp_a = node["auth_cert_sha256"].as_str().unwrap().to_string();
        assert_eq!(fingerprints(&env.globalconf().await), [fp_a.as_str()]);

        // Another member may not add a certificate to H29's node.
        let pem_b = auth_pem(&env, H29, NODE);
        let (s, v) = add_certificate(&env, &g22, &pem_b).await;
        assert_eq!(s, 403, "{v}");
        // A certificate of another member's node is not H29's to add: 403.
        let (s, v) = add_certificate(&env, &h29, &auth_pem(&env, G22, NODE)).await;
        let want = (403, "ndxp.access_denied");
        assert_problem("another member's node", (s, &v), want, "only its own nodes");
        // A certificate issued to another node, or by an untrusted CA, is refused.
        for (what, bad) in [
            ("another node", auth_pem(&env, H29, "node-other")),
            ("an untrusted CA", {
                let other_pki =
                    init_pki(&env.dir.path().join("other-ca"), "http://127.0.0.1:9/ocsp");
                pem(&node_auth_cert(
                    &other_pki,
                    &H29.parse().unwrap(),
                    &NODE.parse().unwrap(),
                ))
            }),
        ] {
            let (s, v) = add_certificate(&env, &h29, &bad).await;
            assert_eq!(s, 400, "{what}: {v}");
            assert!(
                v["detail"]
                    .as_str()
                    .unwrap()
                    .contains("authentication certificate"),
                "{what}: {v}"
            );
        }
        // No such node.
        let (s, _) = env
            .call(
                "POST",
                "/api/v1/nodes/VN/GOV/000.00.00.H29/node-none/certificates",
                Some(&h29),
                Some(json!({"auth_cert_pem": pem_b})),
            )
            .await;
        assert_eq!(s, 404);

        // The member adds certificate B; pending until the operator approves.
        let (s, req) = add_certificate(&env, &h29, &pem_b).await;
        assert_eq!(s, 201, "{req}");
        assert_eq!(req["kind"], "add_certificate");
        assert_eq!(req["state"], "pending");
        assert_eq!(req["address"], ADDRESS);
        let fp_b = req["auth_cert_sha256"].as_str().unwrap().to_string();
        assert_eq!(fingerprints(&env.globalconf().await), [fp_a.as_str()]);
        let (s, _) = env
            .call(
                "POST",
                &format!(
                    "/api/v1/registrations/{}/approve",
                    req["id"].as_str().unwrap()
                ),
                Some(&h29),
                None,
            )
            .await;
        assert_eq!(s, 403, "only an operator approves");
        let node = env.approve_registration(req["id"].as_str().unwrap()).await;
        assert_eq!(node["auth_certs"].as_array().unwrap().len(), 2);
        assert_eq!(node["auth_cert_sha256"], fp_b);
        let conf = env.globalconf().await;
        assert_eq!(fingerprints(&conf), [fp_a.clone(), fp_b.clone()]);
        // Peers look a connecting node up by either fingerprint.
        for fp in [&fp_a, &fp_b] {
            assert_eq!(conf.node_by_auth_cert(fp).unwrap().name.as_str(), NODE);
        }

        // Another member may not remove it either.
        let (s, _) = remove_certificate(&env, &g22, &fp_a).await;
        assert_eq!(s, 403);
        // The member removes A: the next configuration lists only B.
        let (s, v) = remove_certificate(&env, &h29, &fp_a).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["auth_certs"].as_array().unwrap().len(), 1);
        let conf = env.globalconf().await;
        assert_eq!(fingerprints(&conf), [fp_b.as_str()]);
        assert!(conf.node_by_auth_cert(&fp_a).is_none());
        // Gone already: 404; the last one: 409; not a fingerprint: 400.
        let (s, _) = env
            .op("DELETE", &format!("{NODE_PATH}/certificates/{fp_a}"), None)
            .await;
        assert_eq!(s, 404);
        let (s, v) = env
            .op("DELETE", &format!("{NODE_PATH}/certificates/{fp_b}"), None)
            .await;
        assert_eq!(s, 409, "{v}");
        let (s, _) = env
            .op("DELETE", &format!("{NODE_PATH}/certificates/xyz"), None)
            .await;
        assert_eq!(s, 400);

        // The node's own way (`ndxp-node register` with the new keys): a
        // signed request for the existing name adds certificate C.
        let (s, v) = env
            .submit_registration(env.registration(&keys, NODE, ADDRESS))
            .await;
        assert_eq!(
            (s, v["kind"].as_str()),
            (201, Some("add_certificate")),
            "{v}"
        );
        let fp_c = v["auth_cert_sha256"].as_str().unwrap().to_string();
        env.approve_registration(v["id"].as_str().unwrap()).await;
        assert_eq!(fingerprints(&env.globalconf().await), [fp_b.clone(), fp_c]);
        // Signed with a different address: refused (the node keeps its own).
        let moved = env.registration(&keys, NODE, "https://127.0.0.1:9999");
        let (s, v) = env.submit_registration(moved).await;
        assert_eq!(s, 400, "{v}");

        // The audit trail names both steps.
        let (_, audit) = env
            .op("GET", "/api/v1/audit?after=0&limit=1000", None)
            .await;
        let entries = audit["entries"].as_array().unwrap();
        let removed = entries
            .iter()
            .any(|e| e["action"] == "node.remove_certificate");
        assert!(removed, "{audit}");
        env.stop().await;
    }
}
