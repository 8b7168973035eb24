//! The served OpenAPI document and the router agree: every documented
//! (path, method) reaches a real handler, no documented path answers an
//! undocumented method, and handlers are routed only through
//! `utoipa_axum::routes!` (so every route is documented).
#![allow(clippy::unwrap_used)]

mod management_support;

use std::path::Path;

use management_support::{Backend, Env};
use ndxp_test_support::tool::run_tool;
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn sample(param: &str) -> &'static str {
    match param {
        "instance" | "g_instance" => "VN",
        "class" | "g_class" => "GOV",
        "code" | "g_code" => "000.00.00.Z99",
        "subsystem" | "g_subsystem" => "SUB",
        "service" => "svc",
        "version" => "v1",
        "node" => "node-1",
        "group" => "grp",
        "id" => "0190f3c4-7b1a-7c3e-9d2a-1b2c3d4e5f60",
        "sha256" => "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
        other => panic!("no sample value for path parameter {other}"),
    }
}

fn fill(template: &str) -> String {
    template
        .split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(p) => sample(p).to_string(),
                None => seg.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[tokio::test]
async fn the_document_and_the_router_agree() {
    let env = Env::start(Backend::Sqlite).await;
    let r = env.http.get(env.url("/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc,
        serde_json::to_value(ndxp_gateway::management::openapi()).unwrap(),
        "the served document is the one generated from the code"
    );

    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (template, item) in paths {
        let url = fill(template);
        for method in METHODS {
            let documented = item.get(method).is_some();
            let (status, _, v) = env
                .raw(
                    &method.to_uppercase(),
                    &url,
                    Some(&env.operator.clone()),
                    None,
                    vec![],
                )
                .await;
            let detail = v["detail"].as_str().unwrap_or_default().to_string();
            if documented {
                operations += 1;
                let op = &item[method];
                assert!(
                    status != 405 && !detail.starts_with("no route"),
                    "{method} {template} is documented but not routed: {status} {v}"
                );
                assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
                // Every parameter the template names is documented.
                let names: Vec<&str> = op["parameters"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|p| p["in"] == "path")
                            .map(|p| p["name"].as_str().unwrap())
                            .collect()
                    })
                    .unwrap_or_default();
                for seg in template.split('/') {
                    if let Some(p) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        assert!(
                            names.contains(&p),
                            "{method} {template}: parameter {p} undocumented"
                        );
                    }
                }
            } else {
                assert_eq!(
                    status, 405,
                    "{method} {template} answers but is not documented: {v}"
                );
                assert_eq!(v["code"], "ndxp.bad_request");
            }
        }
    }

    // Every handler is annotated and registered only via routes!: the
    // number of annotations equals the number of documented operations,
    // and nothing is routed around the macro.
    let mut files = vec![];
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/management"),
        &mut files,
    );
    let mut annotations = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        annotations += text.matches("#[utoipa::path(").count();
        for forbidden in [
            ".route(",
            ".route_service(",
            ".nest(",
            ".nest_service(",
            ".merge(",
        ] {
            assert!(
                !text.contains(forbidden),
                "{} routes with {forbidden}: register handlers with routes! so they are documented",
                f.display()
            );
        }
    }
    assert_eq!(
        annotations, operations,
        "every annotated handler is routed and documented"
    );
    assert!(operations >= 40, "{operations}");
    env.stop().await;
}

/// The document is valid OpenAPI 3.1 according to a validator we did not
/// write (Python's `openapi-spec-validator`, installed by `.ci/run`).
#[test]
fn the_document_passes_an_independent_openapi_validator() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("openapi.json");
    let doc = serde_json::to_vec_pretty(&ndxp_gateway::management::openapi()).unwrap();
    std::fs::write(&path, doc).unwrap();
    let (ok, text) = run_tool(
        "python3",
        &[
            "-c",
            "import json, sys\n\
             from openapi_spec_validator import validate\n\
             validate(json.load(open(sys.argv[1])))\n\
             print('valid')",
            path.to_str().unwrap(),
        ],
    );
    assert!(
        !text.contains("No module named"),
        "install openapi-spec-validator (pip install openapi-spec-validator; .ci/run does): {text}"
    );
    assert!(ok && text.contains("valid"), "{text}");
}

/// Every operation lists the problem answers its extractors can give, and
/// every error answer is `application/problem+json` with the `Problem`
/// schema (401 also with its `WWW-Authenticate` challenge).
#[test]
fn every_operation_lists_its_problem_answers_as_problem_json() {
    let doc = serde_json::to_value(ndxp_gateway::management::openapi()).unwrap();
    let problem = &doc["components"]["schemas"]["Problem"];
    for field in ["type", "title", "status", "code", "detail"] {
        assert!(problem["properties"].get(field).is_some(), "{problem}");
    }
    let mut checked = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            checked += 1;
            let name = format!("{method} {template}");
            let responses = op["responses"].as_object().unwrap();
            let has = |s: &str| responses.contains_key(s);
            let params = op["parameters"].as_array().is_some_and(|p| !p.is_empty());
            let body = op.get("requestBody").is_some();
            let bearer = op["security"].as_array().is_some_and(|s| !s.is_empty());
            if params || body || bearer {
                assert!(has("500"), "{name}: no 500");
            }
            if params || body {
                assert!(has("400"), "{name}: no 400");
            }
            if body {
                assert!(has("413") && has("415"), "{name}: no 413/415");
            }
            if bearer {
                assert!(has("401"), "{name}: no 401");
                assert!(
                    responses["401"]["headers"]
                        .get("WWW-Authenticate")
                        .is_some(),
                    "{name}: 401 without its challenge"
                );
            }
            for (status, r) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        r["content"],
                        serde_json::json!({"application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}}}),
                        "{name} {status}"
                    );
                } else {
                    assert!(
                        r["content"]
                            .as_object()
                            .is_none_or(|c| !c.contains_key("application/problem+json")),
                        "{name} {status}"
                    );
                }
            }
        }
    }
    assert!(checked >= 40, "{checked}");
    // What only the handlers know: rights, lookups and unique constraints.
    let statuses = |method: &str, path: &str| -> Vec<String> {
        doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} is not documented"))
            .keys()
            .cloned()
            .collect()
    };
    for (method, path, expected) in [
        (
            "post",
            "/api/v1/members",
            &["400", "401", "403", "409", "413", "415"][..],
        ),
        (
            "delete",
            "/api/v1/members/{instance}/{class}/{code}",
            &["400", "401", "403", "404"],
        ),
        (
            "post",
            "/api/v1/members/{instance}/{class}/{code}/subsystems",
            &["403", "404", "409"],
        ),
        (
            "post",
            "/api/v1/registrations",
            &["400", "409", "413", "415"],
        ),
        (
            "get",
            "/api/v1/services/{instance}/{class}/{code}/{subsystem}/{service}/{version}/openapi",
            &["400", "404"],
        ),
        (
            "post",
            "/api/v1/subscriptions/{id}/approve",
            &["403", "404", "409", "413", "415"],
        ),
    ] {
        let got = statuses(method, path);
        for s in expected {
            assert!(
                got.iter().any(|g| g == s),
                "{method} {path}: no {s} in {got:?}"
            );
        }
    }
    // The served document is prepared at start and cannot fail.
    assert_eq!(statuses("get", "/openapi.json"), ["200"]);
}
