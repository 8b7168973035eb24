//! A schema-checking fuzzer against a running management API: for every
//! operation of the served `/openapi.json` it sends the requests a careless
//! or hostile client sends — no token, another member's token, a malformed
//! body, a body over the limit, a wrong content type, malformed path
//! parameters — and checks that every answer is one the document declares
//! for that operation, and that every 4xx/5xx answer is a problem+json
//! document whose `status` is the HTTP status.
#![allow(clippy::unwrap_used)]

mod management_support;

use std::collections::BTreeSet;

use management_support::{Backend, Env, MAX_BODY};
use serde_json::{json, Value};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];
/// The member whose objects the paths name.
const OWNER: &str = "VN/GOV/000.00.00.Z99";
/// A member with no part in the owner's objects.
const OUTSIDER: &str = "VN/GOV/000.00.00.Z98";
/// A member whose subsystem subscribes to the owner's service.
const CLIENT: &str = "VN/GOV/000.00.00.Z97";
const SERVICE: &str = "VN/GOV/000.00.00.Z99/SUB/svc/v1";

/// One documented operation.
struct Op {
    method: String,
    template: String,
    declared: BTreeSet<u16>,
    /// The media type of its request body, when it takes one.
    body_type: Option<String>,
    bearer: bool,
}

impl Op {
    fn name(&self) -> String {
        format!("{} {}", self.method.to_uppercase(), self.template)
    }
}

fn operations(doc: &Value) -> Vec<Op> {
    let mut out = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let declared = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.parse::<u16>().unwrap())
                .collect();
            let body_type = op["requestBody"]["content"]
                .as_object()
                .and_then(|c| c.keys().next().cloned());
            let bearer = op["security"].as_array().is_some_and(|s| !s.is_empty());
            out.push(Op {
                method: method.to_string(),
                template: template.clone(),
                declared,
                body_type,
                bearer,
            });
        }
    }
    out
}

/// The records the `{id}` of each path names.
struct Ids {
    registration: String,
    subscription: String,
    gateway_credential: String,
}

/// The template with every parameter filled: the owner's objects, or
/// `bad` for the parameter named `broken`.
fn fill(template: &str, ids: &Ids, broken: Option<(&str, &str)>) -> String {
    let id = if template.starts_with("/api/v1/registrations/") {
        ids.registration.as_str()
    } else if template.starts_with("/api/v1/subscriptions/")
        || template.starts_with("/api/v1/gateway/subscriptions/")
    {
        ids.subscription.as_str()
    } else if template.starts_with("/api/v1/gateway/credentials/") {
        ids.gateway_credential.as_str()
    } else {
        "0190f3c4-7b1a-7c3e-9d2a-1b2c3d4e5f60"
    };
    template
        .split('/')
        .map(|seg| {
            let Some(p) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
                return seg.to_string();
            };
            if let Some((name, bad)) = broken {
                if name == p {
                    return bad.to_string();
                }
            }
            match p {
                "instance" | "g_instance" => "VN",
                "class" | "g_class" => "GOV",
                "code" => "000.00.00.Z99",
                "g_code" => "000.00.00.Z97",
                "subsystem" => "SUB",
                "g_subsystem" => "CLI",
                "service" => "svc",
                "version" => "v1",
                "node" => "node-1",
                "group" => "grp",
                "id" => id,
                "sha256" => "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
                other => panic!("no value for path parameter {other}"),
            }
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn params(template: &str) -> Vec<&str> {
    template
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

/// The answers, for the failure message and the checks after the run.
struct Run<'a> {
    env: &'a Env,
    failures: Vec<String>,
}

impl Run<'_> {
    /// Sends one request and checks the answer against the document;
    /// returns the status.
    async fn send(
        &mut self,
        case: &str,
        op: &Op,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> u16 {
        let (status, ct, v) = self
            .env
            .raw(&op.method.to_uppercase(), path, token, content_type, body)
            .await;
        if !op.declared.contains(&status) {
            self.failures.push(format!(
                "{case}: {} answered {status}, not declared ({:?}): {v}",
                op.name(),
                op.declared
            ));
        }
        if status >= 400 {
            if ct != "application/problem+json" {
                self.failures.push(format!(
                    "{case}: {} answered {status} as {ct:?}, not application/problem+json",
                    op.name()
                ));
            } else if v["status"] != status
                || !v["code"].as_str().is_some_and(|c| c.starts_with("ndxp."))
            {
                self.failures.push(format!(
                    "{case}: {} answered {status} with a problem document that does not say so: {v}",
                    op.name()
                ));
            }
        }
        status
    }
}

async fn seed(env: &Env) -> (String, Ids) {
    let owner = env.add_member_with_token(OWNER, "Owner").await;
    let outsider = env.add_member_with_token(OUTSIDER, "Outsider").await;
    let client = env.add_member_with_token(CLIENT, "Client").await;
    env.add_subsystem(&owner, OWNER, "SUB").await;
    env.add_subsystem(&client, CLIENT, "CLI").await;
    env.add_service(&owner, SERVICE, "Fuzzed", "t").await;
    let group = json!({"code": "grp", "description": "g"});
    env.op_expect(201, "POST", "/api/v1/groups", Some(group))
        .await;
    // The owner's node, registered and approved.
    let keys = env.member_keys(OWNER);
    let jws = env.registration(&keys, "node-1", "https://127.0.0.1:8202");
    let (s, v) = env.submit_registration(jws).await;
    assert_eq!(s, 201, "{v}");
    let registration = v["id"].as_str().unwrap().to_string();
    env.approve_registration(&registration).await;
    // The client's subscription to the owner's service.
    let cli = format!("{CLIENT}/CLI");
    let body = json!({"service": SERVICE, "client": cli});
    let v = env
        .expect(
            201,
            "POST",
            "/api/v1/subscriptions",
            Some(&client),
            Some(body),
        )
        .await;
    let subscription = v["id"].as_str().unwrap().to_string();
    // The client's gateway credentials.
    let body = Some(json!({ "client": cli }));
    let v = env
        .expect(
            201,
            "POST",
            "/api/v1/gateway/credentials",
            Some(&client),
            body,
        )
        .await;
    let gateway_credential = v["client_id"].as_str().unwrap().to_string();
    (
        outsider,
        Ids {
            registration,
            subscription,
            gateway_credential,
        },
    )
}

#[tokio::test]
async fn every_answer_to_bad_requests_is_declared_and_a_problem() {
    let env = Env::start_as_served(Backend::Sqlite).await;
    let doc: Value = serde_json::from_str(&env.text(env.url("/openapi.json")).await).unwrap();
    let ops = operations(&doc);
    assert!(ops.len() >= 40, "{}", ops.len());
    let (outsider, ids) = seed(&env).await;
    let operator = env.operator.clone();
    let mut run = Run {
        env: &env,
        failures: Vec::new(),
    };
    let empty_object = b"{}".to_vec();

    // (i) No token, and (ii) another member's token on the owner's objects.
    // A body, when the operation takes one, is well-framed but empty.
    let mut refused_outsider = Vec::new();
    for op in &ops {
        let path = fill(&op.template, &ids, None);
        let ct = op.body_type.as_deref();
        let body = || {
            if ct.is_some() {
                empty_object.clone()
            } else {
                vec![]
            }
        };
        let s = run.send("no token", op, &path, None, ct, body()).await;
        if op.bearer && s != 401 {
            run.failures
                .push(format!("no token: {} answered {s}, not 401", op.name()));
        }
        if op.bearer {
            let s = run
                .send(
                    "another member's token",
                    op,
                    &path,
                    Some(&outsider),
                    ct,
                    body(),
                )
                .await;
            if s == 403 {
                refused_outsider.push(op.name());
            }
        }
    }
    // Everything under another member's identifiers is refused to the
    // outsider, whatever it asks.
    for op in &ops {
        let scoped = op.template.starts_with("/api/v1/members/{instance}")
            || op.template.starts_with("/api/v1/nodes/{instance}")
            || (op.template.starts_with("/api/v1/registrations/{id}") && op.method == "get")
            || (op.template.starts_with("/api/v1/subscriptions/{id}") && op.method == "get")
            || op.template.starts_with("/api/v1/gateway/credentials/{id}");
        if scoped && op.body_type.is_none() && !refused_outsider.contains(&op.name()) {
            run.failures.push(format!(
                "another member's token: {} is not refused with 403",
                op.name()
            ));
        }
    }

    // (vi) Malformed path parameters, as the operator (every parameter in
    // turn: a percent-escape, and characters no identifier has).
    for op in &ops {
        for p in params(&op.template) {
            for bad in ["%41", "!!"] {
                let path = fill(&op.template, &ids, Some((p, bad)));
                let ct = op.body_type.as_deref();
                let body = if ct.is_some() {
                    empty_object.clone()
                } else {
                    vec![]
                };
                let s = run
                    .send(
                        &format!("path {p}={bad}"),
                        op,
                        &path,
                        Some(&operator),
                        ct,
                        body,
                    )
                    .await;
                // A percent-escape is refused before anything is looked
                // up; other characters make a malformed identifier (400)
                // or, in an opaque id, one that names nothing (404).
                let refused = if bad.contains('%') {
                    s == 400
                } else {
                    s == 400 || s == 404
                };
                if !refused {
                    run.failures.push(format!(
                        "path {p}={bad}: {} answered {s}, not refused as malformed",
                        op.name()
                    ));
                }
            }
        }
    }

    // (iii) A malformed body, (iv) a body over the limit, (v) a wrong
    // content type, as the operator, on objects that do not exist (so that
    // an operation that reads no body changes nothing). An operation that
    // takes a body answers each with its own status.
    for op in &ops {
        let path = fill(&op.template, &ids, None).replace("Z99", "Z90");
        let ct = op.body_type.as_deref().unwrap_or("application/json");
        let cases: [(&str, &str, Vec<u8>, u16); 3] = [
            ("malformed body", ct, b"{\"x\": [1,".to_vec(), 400),
            ("body over the limit", ct, vec![b' '; MAX_BODY + 1], 413),
            (
                "wrong content type",
                "text/plain",
                empty_object.clone(),
                415,
            ),
        ];
        for (case, content_type, body, expected) in cases {
            let s = run
                .send(case, op, &path, Some(&operator), Some(content_type), body)
                .await;
            if op.body_type.is_some() && s != expected {
                run.failures.push(format!(
                    "{case}: {} answered {s}, not {expected}",
                    op.name()
                ));
            }
        }
    }

    assert!(
        run.failures.is_empty(),
        "{} disagreements between the API and its document:\n{}",
        run.failures.len(),
        run.failures.join("\n")
    );
    env.stop().await;
}
