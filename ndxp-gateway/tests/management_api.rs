//! The management API end to end over HTTP: CRUD and workflows, member
//! scoping, authentication, the audit trail, node registration through to
//! the signed global configuration, bad input, and the admin port. Every
//! test runs on SQLite, and on PostgreSQL when `NDXP_TEST_POSTGRES_URL`
//! is set.
#![allow(clippy::unwrap_used)]

mod management_support;

use management_support::{backends, Env, G22, H29, MAX_BODY};
use serde_json::{json, Value};

const H29_PATH: &str = "/api/v1/members/VN/GOV/000.00.00.H29";
const SVC: &str = "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1";
const SVC_PATH: &str = "/api/v1/services/VN/GOV/000.00.00.H29/CSDLDC/citizen/v1";

/// A bad-input case: method, path, content type, body, status, code.
type Case = (
    &'static str,
    String,
    Option<&'static str>,
    Vec<u8>,
    u16,
    &'static str,
);

/// Audit entries after `after` written by people (not the publisher).
async fn audit_since(env: &Env, after: i64) -> Vec<Value> {
    let path = format!("/api/v1/audit?after={after}&limit=1000");
    let v = env.op_expect(200, "GET", &path, None).await;
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e["actor"].as_str().unwrap().starts_with("system:"))
        .cloned()
        .collect()
}

async fn last_audit_id(env: &Env) -> i64 {
    let mut after = 0;
    loop {
        let path = format!("/api/v1/audit?after={after}&limit=1000");
        let (_, v) = env.op("GET", &path, None).await;
        match v["next_after"].as_i64() {
            Some(n) => after = n,
            None => {
                return v["entries"]
                    .as_array()
                    .unwrap()
                    .last()
                    .map_or(after, |e| e["id"].as_i64().unwrap())
            }
        }
    }
}

/// Provider H29 with subsystem CSDLDC and service citizen/v1; client G22
/// with subsystem QLHT. Returns the two member tokens.
async fn seed(env: &Env) -> (String, String) {
    let h29 = env.add_member_with_token(H29, "Bộ Công an").await;
    let g22 = env.add_member_with_token(G22, "Bộ Tư pháp").await;
    env.add_subsystem(&h29, H29, "CSDLDC").await;
    env.add_subsystem(&g22, G22, "QLHT").await;
    env.add_service(&h29, SVC, "Citizen records", "citizen")
        .await;
    (h29, g22)
}

#[tokio::test]
async fn crud_and_workflows() {
    for b in backends() {
        let env = Env::start(b).await;
        let start = last_audit_id(&env).await;
        let (h29, g22) = seed(&env).await;

        // Members and subsystems.
        let (s, v) = env.op("GET", "/api/v1/members", None).await;
        assert_eq!(s, 200);
        let ids: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [G22, H29]);
        let (s, v) = env.op("GET", H29_PATH, None).await;
        assert_eq!((s, v["name"].as_str()), (200, Some("Bộ Công an")));
        let (s, v) = env
            .op(
                "POST",
                "/api/v1/members",
                Some(json!({"id": H29, "name": "again"})),
            )
            .await;
        assert_eq!((s, v["code"].as_str()), (409, Some("ndxp.bad_request")));
        // The API and the command line share one service and its checks.
        for name in ["   ", "tab\there", &"x".repeat(201)] {
            let (s, v) = env
                .op(
                    "POST",
                    "/api/v1/members",
                    Some(json!({"id": "VN/GOV/000.00.00.X99", "name": name})),
                )
                .await;
            assert_eq!(
                (s, v["code"].as_str()),
                (400, Some("ndxp.bad_request")),
                "{name:?}"
            );
        }
        let (s, v) = env.op("GET", &format!("{H29_PATH}/subsystems"), None).await;
        assert_eq!(
            (s, v[0]["id"].as_str()),
            (200, Some("VN/GOV/000.00.00.H29/CSDLDC"))
        );
        let (s, _) = env
            .op("GET", &format!("{H29_PATH}/subsystems/CSDLDC"), None)
            .await;
        assert_eq!(s, 200);

        // Services: get, patch, the public OpenAPI route.
        let (s, v) = env.op("GET", SVC_PATH, None).await;
        assert_eq!((s, v["openapi"]["openapi"].as_str()), (200, Some("3.1.0")));
        let (s, v) = env
            .call(
                "PATCH",
                SVC_PATH,
                Some(&h29),
                Some(json!({"description": "Citizen records v1",
                            "deprecated_at": "2030-01-01T00:00:00Z", "sunset_at": "2031-01-01T00:00:00Z"})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["description"], "Citizen records v1");
        assert_eq!(v["sunset_at"], "2031-01-01T00:00:00Z");
        let (s, v) = env
            .call(
                "PATCH",
                SVC_PATH,
                Some(&h29),
                Some(json!({"sunset_at": null})),
            )
            .await;
        assert_eq!((s, &v["sunset_at"]), (200, &Value::Null));
        let (s, v) = env
            .call(
                "PATCH",
                SVC_PATH,
                Some(&h29),
                Some(json!({"sunset_at": "2029-01-01T00:00:00Z"})),
            )
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (400, Some("ndxp.bad_request")),
            "sunset before deprecation"
        );
        let r = env
            .http
            .get(env.url(&format!("{SVC_PATH}/openapi")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let doc: Value = r.json().await.unwrap();
        assert_eq!(doc["info"]["title"], "citizen");
        let (s, v) = env
            .op(
                "GET",
                "/api/v1/services?provider=VN/GOV/000.00.00.H29/CSDLDC",
                None,
            )
            .await;
        assert_eq!((s, v.as_array().unwrap().len()), (200, 1));

        // Groups and access rights.
        let (s, v) = env
            .op(
                "POST",
                "/api/v1/groups",
                Some(json!({"code": "justice", "description": "Justice"})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let (s, v) = env
            .op(
                "POST",
                "/api/v1/groups/justice/members",
                Some(json!({"subsystem": "VN/GOV/000.00.00.G22/QLHT"})),
            )
            .await;
        assert_eq!(
            (s, v["members"][0].as_str()),
            (200, Some("VN/GOV/000.00.00.G22/QLHT"))
        );
        let (s, v) = env
            .call(
                "POST",
                &format!("{SVC_PATH}/access"),
                Some(&h29),
                Some(json!({"group": "justice"})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let (s, v) = env
            .call(
                "POST",
                &format!("{SVC_PATH}/access"),
                Some(&h29),
                Some(json!({"subsystem": "VN/GOV/000.00.00.G22/QLHT"})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let (s, v) = env
            .call("GET", &format!("{SVC_PATH}/access"), Some(&h29), None)
            .await;
        assert_eq!((s, v.as_array().unwrap().len()), (200, 2));
        let (s, _) = env
            .call(
                "DELETE",
                &format!("{SVC_PATH}/access/subsystem/VN/GOV/000.00.00.G22/QLHT"),
                Some(&h29),
                None,
            )
            .await;
        assert_eq!(s, 204);
        let (s, _) = env
            .call(
                "DELETE",
                &format!("{SVC_PATH}/access/group/justice"),
                Some(&h29),
                None,
            )
            .await;
        assert_eq!(s, 204);
        let (s, v) = env
            .call(
                "DELETE",
                &format!("{SVC_PATH}/access/group/justice"),
                Some(&h29),
                None,
            )
            .await;
        assert_eq!((s, v["code"].as_str()), (404, Some("ndxp.service_unknown")));
        let (s, _) = env
            .op(
                "DELETE",
                "/api/v1/groups/justice/members/VN/GOV/000.00.00.G22/QLHT",
                None,
            )
            .await;
        assert_eq!(s, 200);
        let (s, _) = env.op("DELETE", "/api/v1/groups/justice", None).await;
        assert_eq!(s, 204);
        let (s, _) = env.op("GET", "/api/v1/groups/justice", None).await;
        assert_eq!(s, 404);

        // Subscriptions: G22 asks, H29 approves, G22 cancels; history kept.
        let (s, v) = env
            .call("POST", "/api/v1/subscriptions", Some(&g22),
                  Some(json!({"service": SVC, "client": "VN/GOV/000.00.00.G22/QLHT", "note": "please"})))
            .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["state"], "requested");
        let sub = v["id"].as_str().unwrap().to_string();
        let (s, v) = env
            .call(
                "POST",
                &format!("/api/v1/subscriptions/{sub}/approve"),
                Some(&g22),
                None,
            )
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (403, Some("ndxp.access_denied")),
            "the client cannot approve"
        );
        let (s, v) = env
            .call(
                "POST",
                &format!("/api/v1/subscriptions/{sub}/approve"),
                Some(&h29),
                None,
            )
            .await;
        assert_eq!((s, v["state"].as_str()), (200, Some("approved")));
        let (s, v) = env
            .call(
                "POST",
                &format!("/api/v1/subscriptions/{sub}/reject"),
                Some(&h29),
                Some(json!({"note": "no"})),
            )
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (409, Some("ndxp.bad_request")),
            "approved cannot be rejected"
        );
        let (s, v) = env
            .call(
                "POST",
                &format!("/api/v1/subscriptions/{sub}/cancel"),
                Some(&g22),
                Some(json!({"note": "done"})),
            )
            .await;
        assert_eq!((s, v["state"].as_str()), (200, Some("cancelled")));
        let (s, v) = env
            .op("GET", &format!("/api/v1/subscriptions/{sub}"), None)
            .await;
        assert_eq!(s, 200);
        let states: Vec<&str> = v["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["requested", "approved", "cancelled"]);
        assert_eq!(v["history"][1]["actor"], format!("member:{H29}"));
        let (s, v) = env
            .call(
                "GET",
                "/api/v1/subscriptions?state=cancelled",
                Some(&g22),
                None,
            )
            .await;
        assert_eq!((s, v.as_array().unwrap().len()), (200, 1));

        // Credentials: list shows no token; a revoked token stops at once.
        let (s, v) = env
            .op(
                "POST",
                "/api/v1/credentials",
                Some(json!({"kind": "operator", "name": "second"})),
            )
            .await;
        assert_eq!(s, 201);
        let second = v["token"].as_str().unwrap().to_string();
        let cred = v["credential"]["id"].as_str().unwrap().to_string();
        assert_eq!(v["credential"]["token_sha256"].as_str().unwrap().len(), 64);
        let (s, _) = env
            .call("GET", "/api/v1/members", Some(&second), None)
            .await;
        assert_eq!(s, 200);
        let (s, v) = env.op("GET", "/api/v1/credentials", None).await;
        assert_eq!(s, 200);
        assert!(
            !v.to_string().contains(&second),
            "the token is never listed"
        );
        let (s, v) = env
            .op("POST", &format!("/api/v1/credentials/{cred}/revoke"), None)
            .await;
        assert_eq!(s, 200);
        assert!(v["revoked_at"].is_string());
        let (s, v) = env
            .call("GET", "/api/v1/members", Some(&second), None)
            .await;
        assert_eq!((s, v["code"].as_str()), (401, Some("ndxp.unauthorized")));

        // Removals.
        let (s, _) = env.call("DELETE", SVC_PATH, Some(&h29), None).await;
        assert_eq!(s, 204);
        let (s, _) = env.call("GET", SVC_PATH, Some(&h29), None).await;
        assert_eq!(s, 404);
        let (s, _) = env
            .call(
                "DELETE",
                &format!("{H29_PATH}/subsystems/CSDLDC"),
                Some(&h29),
                None,
            )
            .await;
        assert_eq!(s, 204);
        let (s, v) = env.call("DELETE", H29_PATH, Some(&h29), None).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (403, Some("ndxp.access_denied")),
            "only operators remove members"
        );
        let (s, _) = env.op("DELETE", H29_PATH, None).await;
        assert_eq!(s, 204);
        let (s, _) = env.op("GET", H29_PATH, None).await;
        assert_eq!(s, 404);
        let (s, _) = env.call("GET", "/api/v1/nodes", Some(&h29), None).await;
        assert_eq!(s, 401, "removing a member revokes its credentials");

        // The audit trail has every write, with the right actor.
        let entries = audit_since(&env, start).await;
        let actions: Vec<(String, String)> = entries
            .iter()
            .map(|e| {
                (
                    e["actor"].as_str().unwrap().to_string(),
                    e["action"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let count = |actor: &str| actions.iter().filter(|(a, _)| a == actor).count();
        // operator: 2 members + 2 member credentials + group add + group member add
        // + group member remove + group remove + credential + revoke + member remove
        assert_eq!(count("operator:admin"), 11, "{actions:?}");
        // H29: subsystem, service, 2 patches (the refused third writes
        // nothing), 2 grants, 2 revokes, approve, service remove, subsystem
        // remove
        assert_eq!(count(&format!("member:{H29}")), 11, "{actions:?}");
        // G22: subsystem, subscription request, cancel
        assert_eq!(count(&format!("member:{G22}")), 3, "{actions:?}");
        assert_eq!(actions.len(), 25, "no other writes: {actions:?}");
        for e in &entries {
            assert!(e["at"].is_string() && e["target"].is_string());
        }
        // Paging returns the same entries in order, without gaps.
        let (_, p1) = env
            .op("GET", &format!("/api/v1/audit?after={start}&limit=5"), None)
            .await;
        assert_eq!(p1["entries"].as_array().unwrap().len(), 5);
        let next = p1["next_after"].as_i64().unwrap();
        let (_, p2) = env
            .op("GET", &format!("/api/v1/audit?after={next}&limit=5"), None)
            .await;
        assert_eq!(p2["entries"][0]["id"].as_i64().unwrap(), next + 1);
        env.stop().await;
    }
}

#[tokio::test]
async fn members_see_and_change_only_their_own_entries() {
    for b in backends() {
        let env = Env::start(b).await;
        let (h29, g22) = seed(&env).await;
        let before = env.registry_version().await;

        // G22 cannot read or change H29's entries.
        for (method, path, body) in [
            ("GET", H29_PATH.to_string(), None),
            ("GET", format!("{H29_PATH}/subsystems"), None),
            (
                "POST",
                format!("{H29_PATH}/subsystems"),
                Some(json!({"code": "X"})),
            ),
            ("DELETE", format!("{H29_PATH}/subsystems/CSDLDC"), None),
            (
                "PATCH",
                SVC_PATH.to_string(),
                Some(json!({"description": "mine now"})),
            ),
            ("DELETE", SVC_PATH.to_string(), None),
            ("GET", format!("{SVC_PATH}/access"), None),
            (
                "POST",
                format!("{SVC_PATH}/access"),
                Some(json!({"subsystem": "VN/GOV/000.00.00.G22/QLHT"})),
            ),
            (
                "GET",
                "/api/v1/nodes/VN/GOV/000.00.00.H29/n1".to_string(),
                None,
            ),
            (
                "POST",
                "/api/v1/services".to_string(),
                Some(json!({"id": "VN/GOV/000.00.00.H29/CSDLDC/other/v1", "description": "x"})),
            ),
            (
                "POST",
                "/api/v1/subscriptions".to_string(),
                Some(json!({"service": SVC, "client": "VN/GOV/000.00.00.H29/CSDLDC"})),
            ),
            (
                "POST",
                "/api/v1/members".to_string(),
                Some(json!({"id": "VN/GOV/X", "name": "x"})),
            ),
            ("GET", "/api/v1/credentials".to_string(), None),
            ("GET", "/api/v1/audit".to_string(), None),
            (
                "POST",
                "/api/v1/groups".to_string(),
                Some(json!({"code": "g", "description": "x"})),
            ),
        ] {
            let (s, v) = env.call(method, &path, Some(&g22), body).await;
            assert_eq!(
                (s, v["code"].as_str()),
                (403, Some("ndxp.access_denied")),
                "{method} {path}"
            );
        }
        assert_eq!(env.registry_version().await, before, "nothing was written");

        // Lists are filtered to the caller.
        let (_, v) = env.call("GET", "/api/v1/members", Some(&g22), None).await;
        assert_eq!(v.as_array().unwrap().len(), 1);
        assert_eq!(v[0]["id"], G22);
        let (_, v) = env
            .call("GET", "/api/v1/access-rights", Some(&g22), None)
            .await;
        assert_eq!(v, json!([]));

        // Their own: fine.
        let (s, _) = env
            .call(
                "GET",
                "/api/v1/members/VN/GOV/000.00.00.G22",
                Some(&g22),
                None,
            )
            .await;
        assert_eq!(s, 200);
        let (s, _) = env.call("GET", H29_PATH, Some(&h29), None).await;
        assert_eq!(s, 200);
        let (s, _) = env
            .call(
                "PATCH",
                SVC_PATH,
                Some(&h29),
                Some(json!({"description": "ok"})),
            )
            .await;
        assert_eq!(s, 200);
        // The catalogue is public (it is in the global configuration).
        let (s, _) = env.call("GET", SVC_PATH, Some(&g22), None).await;
        assert_eq!(s, 200);

        // A subscription is visible to the client and the provider only.
        let (_, v) = env
            .call(
                "POST",
                "/api/v1/subscriptions",
                Some(&g22),
                Some(json!({"service": SVC, "client": "VN/GOV/000.00.00.G22/QLHT"})),
            )
            .await;
        let sub = v["id"].as_str().unwrap().to_string();
        let other = env.add_member_with_token("VN/COM/0101", "Other").await;
        let (s, _) = env
            .call(
                "GET",
                &format!("/api/v1/subscriptions/{sub}"),
                Some(&other),
                None,
            )
            .await;
        assert_eq!(s, 403);
        let (s, _) = env
            .call(
                "POST",
                &format!("/api/v1/subscriptions/{sub}/cancel"),
                Some(&other),
                None,
            )
            .await;
        assert_eq!(s, 403);
        let (_, v) = env
            .call("GET", "/api/v1/subscriptions", Some(&other), None)
            .await;
        assert_eq!(v, json!([]));
        let (s, _) = env
            .call(
                "GET",
                &format!("/api/v1/subscriptions/{sub}"),
                Some(&h29),
                None,
            )
            .await;
        assert_eq!(s, 200);
        env.stop().await;
    }
}

#[tokio::test]
async fn missing_or_wrong_tokens_get_401() {
    for b in backends() {
        let env = Env::start(b).await;
        for token in [None, Some("ndxp_wrong"), Some("")] {
            let r = {
                let mut rb = env.http.get(env.url("/api/v1/members"));
                if let Some(t) = token {
                    rb = rb.header("authorization", format!("Bearer {t}"));
                }
                rb.send().await.unwrap()
            };
            assert_eq!(r.status(), 401);
            assert!(r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"));
            assert_eq!(r.headers()["content-type"], "application/problem+json");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["code"], "ndxp.unauthorized");
        }
        let r = env
            .http
            .get(env.url("/api/v1/members"))
            .header("authorization", format!("Basic {}", env.operator))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "only the Bearer scheme");
        let before = env.registry_version().await;
        let (s, _) = env
            .call(
                "POST",
                "/api/v1/members",
                None,
                Some(json!({"id": H29, "name": "x"})),
            )
            .await;
        assert_eq!(s, 401);
        assert_eq!(env.registry_version().await, before);
        env.stop().await;
    }
}

#[tokio::test]
async fn registration_approval_reaches_the_global_configuration() {
    for b in backends() {
        let env = Env::start(b).await;
        let (h29, _g22) = seed(&env).await;
        let (s, _) = env
            .call(
                "POST",
                &format!("{SVC_PATH}/access"),
                Some(&h29),
                Some(json!({"subsystem": "VN/GOV/000.00.00.G22/QLHT"})),
            )
            .await;
        assert_eq!(s, 201);
        let conf0 = env.globalconf().await;
        assert!(conf0.nodes.is_empty());
        assert_eq!(conf0.cas.len(), 1);
        assert_eq!(conf0.tsas.len(), 1);
        let svc = conf0.service(&SVC.parse().unwrap()).unwrap();
        assert_eq!(
            svc.openapi_url.as_deref(),
            Some("http://127.0.0.1:8100/api/v1/services/VN/GOV/000.00.00.H29/CSDLDC/citizen/v1/openapi")
        );
        assert!(conf0.allows(
            &"VN/GOV/000.00.00.G22/QLHT".parse().unwrap(),
            &SVC.parse().unwrap()
        ));
        assert_eq!(
            conf0.member(&H29.parse().unwrap()).unwrap().subsystems,
            ["CSDLDC"]
        );
        // Unchanged registry: the same version is served again.
        assert_eq!(env.globalconf().await.version, conf0.version);

        // The node sends its signed request, without a token.
        let keys = env.member_keys(H29);
        let jws = env.registration(&keys, "node-h29", "https://127.0.0.1:8202");
        let (s, ct, v) = env
            .raw(
                "POST",
                "/api/v1/registrations",
                None,
                Some("application/jose"),
                jws.clone().into_bytes(),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(ct, "application/json");
        assert_eq!(v["state"], "pending");
        let id = v["id"].as_str().unwrap().to_string();
        // The same request again is a duplicate.
        let (s, v) = env.submit_registration(jws).await;
        assert_eq!((s, v["code"].as_str()), (409, Some("ndxp.bad_request")));
        // Signed by another member's key: refused.
        let g22_keys = env.member_keys(G22);
        let forged = {
            let mut k = env.member_keys(H29);
            k.sign_key = g22_keys.sign_key;
            k.sign_chain = g22_keys.sign_chain;
            env.registration(&k, "node-x", "https://127.0.0.1:8203")
        };
        let (s, v) = env.submit_registration(forged).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (400, Some("ndxp.signature_invalid")),
            "{v}"
        );

        // The member sees its request; pending nodes are not in the conf.
        let (s, v) = env
            .call(
                "GET",
                &format!("/api/v1/registrations/{id}"),
                Some(&h29),
                None,
            )
            .await;
        assert_eq!((s, v["state"].as_str()), (200, Some("pending")));
        let (s, _) = env
            .call(
                "POST",
                &format!("/api/v1/registrations/{id}/approve"),
                Some(&h29),
                None,
            )
            .await;
        assert_eq!(s, 403, "a member cannot approve its own node");
        let (s, v) = env
            .op("GET", "/api/v1/registrations?state=pending", None)
            .await;
        assert_eq!((s, v.as_array().unwrap().len()), (200, 1));

        let v = env.approve_registration(&id).await;
        assert_eq!(v["name"], "node-h29");
        let conf1 = env.globalconf().await;
        assert!(conf1.version > conf0.version);
        let node = conf1
            .node(&H29.parse().unwrap(), &"node-h29".parse().unwrap())
            .unwrap();
        assert_eq!(node.address, "https://127.0.0.1:8202");
        assert_eq!(
            node.auth_cert_sha256,
            [v["auth_cert_sha256"].as_str().unwrap()]
        );
        let (s, _) = env
            .op("POST", &format!("/api/v1/registrations/{id}/approve"), None)
            .await;
        assert_eq!(s, 409, "approved once");

        // A rejected request never becomes a node.
        let jws = env.registration(&keys, "node-h29b", "https://127.0.0.1:8204");
        let (_, v) = env.submit_registration(jws).await;
        let id2 = v["id"].as_str().unwrap().to_string();
        let (s, v) = env
            .op(
                "POST",
                &format!("/api/v1/registrations/{id2}/reject"),
                Some(json!({"reason": "  "})),
            )
            .await;
        assert_eq!(
            (s, v["code"].as_str()),
            (400, Some("ndxp.bad_request")),
            "a reason is required"
        );
        let (s, v) = env
            .op(
                "POST",
                &format!("/api/v1/registrations/{id2}/reject"),
                Some(json!({"reason": "unknown host"})),
            )
            .await;
        assert_eq!((s, v["state"].as_str()), (200, Some("rejected")));

        // The member removes its node: gone in the next version.
        let (s, _) = env
            .call(
                "DELETE",
                "/api/v1/nodes/VN/GOV/000.00.00.H29/node-h29",
                Some(&h29),
                None,
            )
            .await;
        assert_eq!(s, 204);
        let conf2 = env.globalconf().await;
        assert!(conf2.version > conf1.version);
        assert!(conf2.nodes.is_empty());

        // The audit trail says who submitted and who approved.
        let entries = audit_since(&env, 0).await;
        let has = |actor: &str, action_part: &str| {
            entries
                .iter()
                .any(|e| e["actor"] == actor && e["action"].as_str().unwrap().contains(action_part))
        };
        assert!(has(&format!("member:{H29}"), "registration"), "{entries:?}");
        assert!(has("operator:admin", "registration"), "{entries:?}");
        assert!(has(&format!("member:{H29}"), "node"), "{entries:?}");
        env.stop().await;
    }
}

#[tokio::test]
async fn bad_input_gets_problem_4xx_and_writes_nothing() {
    for b in backends() {
        let env = Env::start(b).await;
        let (h29, _) = seed(&env).await;
        let op = env.operator.clone();
        let before = env.registry_version().await;
        let json_ct = Some("application/json");
        let cases: Vec<Case> = vec![
            (
                "POST",
                "/api/v1/members".into(),
                json_ct,
                b"{\"id\": ".to_vec(),
                400,
                "ndxp.bad_request",
            ),
            (
                "POST",
                "/api/v1/members".into(),
                json_ct,
                b"[]".to_vec(),
                400,
                "ndxp.bad_request",
            ),
            (
                "POST",
                "/api/v1/members".into(),
                json_ct,
                br#"{"id":"VN/GOV/1","name":"x","extra":1}"#.to_vec(),
                400,
                "ndxp.bad_request",
            ),
            (
                "POST",
                "/api/v1/members".into(),
                json_ct,
                br#"{"id":"VN/GOV/1"}"#.to_vec(),
                400,
                "ndxp.bad_request",
            ),
            (
                "POST",
                "/api/v1/members".into(),
                json_ct,
                br#"{"id":"VN/GOV/../x","name":"x"}"#.to_vec(),
                400,
                "ndxp.bad_request",
            ),
            (
                "POST",
                "/api/v1/members".into(),
                json_ct,
                br#"{"id":"LA/GOV/1","name":"x"}"#.to_vec(),
                400,
                "ndxp.bad_request",
            ),
            (
                "POST",
                "/api/v1/members".into(),
                Some("text/plain"),
                br#"{"id":"VN/GOV/1","name":"x"}"#.to_vec(),
                415,
                "ndxp.bad_request",
            ),
            (
                "POST",
                "/api/v1/members".into(),
                None,
                br#"{"id":"VN/GOV/1","name":"x"}"#.to_vec(),
                415,
                "ndxp.bad_request",
            ),
            (
                "POST",
                "/api/v1/members".into(),
                json_ct,
                format!(r#"{{"id":"VN/GOV/1","name":"{}"}}"#, "x".repeat(MAX_BODY)).into_bytes(),
                413,
                "ndxp.payload_too_large",
            ),
            (
                "POST",
                format!("{H29_PATH}/subsystems"),
                json_ct,
                br#"{"code":"a b"}"#.to_vec(),
                400,
                "ndxp.bad_request",
            ),
            (
                "GET",
                "/api/v1/members/VN/GOV/a%2Fb".into(),
                None,
                vec![],
                400,
                "ndxp.bad_request",
            ),
            (
                "GET",
                "/api/v1/members/VN/GOV/%41".into(),
                None,
                vec![],
                400,
                "ndxp.bad_request",
            ),
            (
                "GET",
                "/api/v1/members/VN/GOV/a..b".into(),
                None,
                vec![],
                400,
                "ndxp.bad_request",
            ),
            (
                "GET",
                "/api/v1/members/VN/GOV/nobody".into(),
                None,
                vec![],
                404,
                "ndxp.service_unknown",
            ),
            (
                "DELETE",
                "/api/v1/members/VN/GOV/nobody".into(),
                None,
                vec![],
                404,
                "ndxp.service_unknown",
            ),
            (
                "DELETE",
                "/api/v1/services/VN/GOV/000.00.00.H29/CSDLDC/citizen/1".into(),
                None,
                vec![],
                400,
                "ndxp.bad_request",
            ),
            (
                "GET",
                "/api/v1/subscriptions/not-a-uuid".into(),
                None,
                vec![],
                400,
                "ndxp.bad_request",
            ),
            (
                "GET",
                "/api/v1/subscriptions/0190F3C4-7B1A-7C3E-9D2A-1B2C3D4E5F60".into(),
                None,
                vec![],
                400,
                "ndxp.bad_request",
            ),
            (
                "POST",
                "/api/v1/subscriptions/0190f3c4-7b1a-7c3e-9d2a-1b2c3d4e5f60/approve".into(),
                None,
                vec![],
                404,
                "ndxp.service_unknown",
            ),
            (
                "POST",
                "/api/v1/registrations/0190f3c4-7b1a-7c3e-9d2a-1b2c3d4e5f60/approve".into(),
                None,
                vec![],
                404,
                "ndxp.service_unknown",
            ),
            (
                "POST",
                "/api/v1/credentials/0190f3c4-7b1a-7c3e-9d2a-1b2c3d4e5f60/revoke".into(),
                None,
                vec![],
                404,
                "ndxp.service_unknown",
            ),
            (
                "POST",
                "/api/v1/subscriptions".into(),
                json_ct,
                format!(r#"{{"service":"{SVC}","client":"VN/GOV/000.00.00.G22/NOPE"}}"#)
                    .into_bytes(),
                400,
                "ndxp.bad_request",
            ),
            (
                "POST",
                "/api/v1/services".into(),
                json_ct,
                br#"{"id":"VN/GOV/000.00.00.H29/NOPE/x/v1","description":"x"}"#.to_vec(),
                400,
                "ndxp.bad_request",
            ),
            (
                "POST",
                "/api/v1/services".into(),
                json_ct,
                br#"{"id":"VN/GOV/000.00.00.H29/CSDLDC/x/v1","description":"x","openapi":"text"}"#
                    .to_vec(),
                400,
                "ndxp.bad_request",
            ),
            (
                "PATCH",
                SVC_PATH.into(),
                json_ct,
                br#"{"descripton":"typo"}"#.to_vec(),
                400,
                "ndxp.bad_request",
            ),
            (
                "POST",
                format!("{SVC_PATH}/access"),
                json_ct,
                br#"{"subsystem":"a","group":"b"}"#.to_vec(),
                400,
                "ndxp.bad_request",
            ),
            (
                "POST",
                format!("{SVC_PATH}/access"),
                json_ct,
                br#"{"everyone":true}"#.to_vec(),
                400,
                "ndxp.bad_request",
            ),
            (
                "POST",
                "/api/v1/subscriptions/0190f3c4-7b1a-7c3e-9d2a-1b2c3d4e5f60/cancel".into(),
                json_ct,
                br#"{"note":1}"#.to_vec(),
                400,
                "ndxp.bad_request",
            ),
            (
                "GET",
                "/api/v1/audit?limit=0".into(),
                None,
                vec![],
                400,
                "ndxp.bad_request",
            ),
            (
                "GET",
                "/api/v1/audit?foo=1".into(),
                None,
                vec![],
                400,
                "ndxp.bad_request",
            ),
            (
                "GET",
                "/api/v1/registrations?state=maybe".into(),
                None,
                vec![],
                400,
                "ndxp.bad_request",
            ),
            (
                "POST",
                "/api/v1/credentials".into(),
                json_ct,
                br#"{"kind":{"member":"VN/GOV/nobody"},"name":"x"}"#.to_vec(),
                400,
                "ndxp.bad_request",
            ),
            (
                "POST",
                "/api/v1/credentials".into(),
                json_ct,
                br#"{"kind":"root","name":"x"}"#.to_vec(),
                400,
                "ndxp.bad_request",
            ),
            (
                "GET",
                "/api/v1/nothing".into(),
                None,
                vec![],
                404,
                "ndxp.service_unknown",
            ),
            (
                "GET",
                "/nothing".into(),
                None,
                vec![],
                404,
                "ndxp.service_unknown",
            ),
            (
                "PUT",
                "/api/v1/members".into(),
                None,
                vec![],
                405,
                "ndxp.bad_request",
            ),
        ];
        for (method, path, ct, body, status, code) in cases {
            let (s, rct, v) = env.raw(method, &path, Some(&op), ct, body).await;
            assert_eq!(
                (s, v["code"].as_str()),
                (status, Some(code)),
                "{method} {path}: {v}"
            );
            assert_eq!(rct, "application/problem+json", "{method} {path}");
            assert_eq!(v["status"], status);
            assert!(v["type"].as_str().unwrap().starts_with("urn:ndxp:problem:"));
        }
        // Registrations: wrong media type, garbage, oversize.
        for (ct, body, status, code) in [
            (
                Some("application/json"),
                b"{}".to_vec(),
                415,
                "ndxp.bad_request",
            ),
            (
                Some("application/jose"),
                b"not.a.jws".to_vec(),
                400,
                "ndxp.signature_invalid",
            ),
            (
                Some("application/jose"),
                vec![0xff, 0xfe],
                400,
                "ndxp.bad_request",
            ),
            (
                Some("application/jose"),
                vec![b'a'; MAX_BODY + 1],
                413,
                "ndxp.payload_too_large",
            ),
        ] {
            let (s, _, v) = env
                .raw("POST", "/api/v1/registrations", None, ct, body)
                .await;
            assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{v}");
        }
        // A member's token does not turn a malformed body into a write either.
        let (s, _, _) = env
            .raw(
                "POST",
                format!("{H29_PATH}/subsystems").as_str(),
                Some(&h29),
                json_ct,
                b"{".to_vec(),
            )
            .await;
        assert_eq!(s, 400);
        assert_eq!(env.registry_version().await, before, "nothing was written");
        env.stop().await;
    }
}

#[tokio::test]
async fn admin_port_health_readiness_and_metrics() {
    let env = Env::start(management_support::Backend::Sqlite).await;
    let r = env
        .http
        .get(env.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = env.http.get(env.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ready"], true);
    assert!(v["globalconf_version"].as_i64().unwrap() >= 1);
    let (s, _) = env.op("GET", "/api/v1/members/VN/GOV/nobody", None).await;
    assert_eq!(s, 404);
    let (s, _) = env.op("GET", "/api/v1/members", None).await;
    assert_eq!(s, 200);
    let text = env.text(env.admin_url("/metrics")).await;
    assert!(text.contains(
        r#"ndxp_management_requests_total{method="GET",route="/api/v1/members/{instance}/{class}/{code}",status="404"} 1"#
    ), "{text}");
    assert!(
        text.contains(
            r#"ndxp_management_requests_total{method="GET",route="/api/v1/members",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"ndxp_management_errors_total{code="ndxp.service_unknown"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("ndxp_management_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("ndxp_globalconf_version "), "{text}");
    assert!(text.contains("ndxp_globalconf_age_seconds "), "{text}");

    // Without its database the process is alive but not ready.
    env.sql.close().await;
    let r = env.http.get(env.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ready"], false);
    assert!(v["reason"].as_str().unwrap().contains("registry"), "{v}");
    let r = env
        .http
        .get(env.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, v) = env.op("GET", "/api/v1/members", None).await;
    assert_eq!((s, v["code"].as_str()), (500, Some("ndxp.internal")));
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("internal error; the server log") && !detail.contains("sqlx"),
        "{detail}"
    );
    env.stop().await;
}

#[tokio::test]
async fn publisher_versions_are_unique_and_renewed_before_expiry() {
    use ndxp_gateway::management::publisher::Publisher;
    for b in backends() {
        let env = Env::start(b).await;
        let first = env.globalconf().await;
        // Two publishers (as two processes sharing the database) race on
        // a registry change: one version is stored, both serve it.
        let (s, _) = env
            .op(
                "POST",
                "/api/v1/members",
                Some(json!({"id": H29, "name": "x"})),
            )
            .await;
        assert_eq!(s, 201);
        let p1 = Publisher::new(&env.config, env.store.clone(), None).unwrap();
        let p2 = Publisher::new(&env.config, env.store.clone(), None).unwrap();
        let now = chrono::Utc::now();
        let (a, b2) = tokio::join!(p1.ensure_current(now), p2.ensure_current(now));
        let (a, b2) = (a.unwrap(), b2.unwrap());
        assert_eq!(a.version, b2.version);
        assert_eq!(a.version, i64::try_from(first.version).unwrap() + 1);
        assert_eq!(a.registry_version, env.registry_version().await);
        // Unchanged registry, before half the validity (3600 s): the same.
        let later = now + chrono::TimeDelta::seconds(1799);
        assert_eq!(p1.ensure_current(later).await.unwrap().version, a.version);
        // Past half the validity: renewed with a later expiry.
        let renewed = p1
            .ensure_current(now + chrono::TimeDelta::seconds(1801))
            .await
            .unwrap();
        assert_eq!(renewed.version, a.version + 1);
        assert!(renewed.expires_at > a.expires_at);
        env.stop().await;
    }
}
