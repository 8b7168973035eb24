//! A sample provider backend: a (fictional) citizen registry.
//!
//! It is the information system behind the service
//! `VN/GOV/000.00.00.H29/CSDLDC/citizen/v1` in the demo, and the backend of
//! the node and gateway benchmarks, so it is built to be fast: every answer
//! is serialised once, when the router is built, and served from shared
//! [`Bytes`] over plain hyper HTTP/1.1 with keep-alive.
//!
//! | Request | Answer |
//! |---|---|
//! | `GET /persons/{id}` | `200` and the person's record (about 1 KiB of JSON) for an id of [`PERSON_IDS`]; `404` and a JSON error otherwise |
//! | `GET /openapi.json` | `200` and the OpenAPI 3.1 document of this API |
//! | `GET /healthz` | `200` and `ok` |
//! | anything else | `404` (unknown path) or `405` (known path, other method), JSON |
//!
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8400").await?;
//! ndxp_examples::citizen_registry::serve(listener, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The default listening address of the `citizen-registry` binary.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8400";

/// The person ids of the built-in data set.
pub const PERSON_IDS: [&str; 5] = [
    "001099012345",
    "001185004321",
    "079203000777",
    "031190002468",
    "048301013579",
];

/// How long [`serve`] lets open connections finish their current request
/// after the shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The fixed answers of the registry, serialised once.
#[derive(Debug)]
pub struct Registry {
    persons: HashMap<&'static str, Bytes>,
    openapi: Bytes,
}

impl Registry {
    /// The registry with the built-in data set.
    pub fn new() -> Self {
        let persons = PERSON_IDS
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, Bytes::from(person(i, id).to_string())))
            .collect();
        Self {
            persons,
            openapi: Bytes::from(openapi_document().to_string()),
        }
    }

    /// The serialised record of person `id`, if the data set has it.
    pub fn person(&self, id: &str) -> Option<&Bytes> {
        self.persons.get(id)
    }

    /// Answers one request. Bodies of requests are ignored (every route is
    /// a `GET`).
    pub fn answer(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        let known = path == "/healthz" || path == "/openapi.json" || path.starts_with("/persons/");
        if known && method != Method::GET && method != Method::HEAD {
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                &format!("{method} is not allowed here; use GET"),
            );
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        match path {
            "/healthz" => with_type(Bytes::from_static(b"ok\n"), "text/plain; charset=utf-8"),
            "/openapi.json" => with_type(self.openapi.clone(), "application/json"),
            _ => match path.strip_prefix("/persons/") {
                Some(id) => match self.persons.get(id) {
                    Some(body) => with_type(body.clone(), "application/json"),
                    None if is_person_id(id) => error(
                        StatusCode::NOT_FOUND,
                        "person_not_found",
                        &format!("no person with id {id} in this registry"),
                    ),
                    None => error(
                        StatusCode::NOT_FOUND,
                        "person_not_found",
                        "a person id is 12 digits, e.g. 001099012345",
                    ),
                },
                None => error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "unknown path; see /openapi.json",
                ),
            },
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

/// The shared registry of the process.
fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::new)
}

/// True for an id of 12 ASCII digits (the citizen identity number format).
pub fn is_person_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
}

fn with_type(body: Bytes, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn error(status: StatusCode, code: &str, detail: &str) -> Response<Full<Bytes>> {
    let body = json!({"error": code, "status": status.as_u16(), "detail": detail});
    let mut r = with_type(Bytes::from(body.to_string()), "application/json");
    *r.status_mut() = status;
    r
}

/// Serves the registry on `listener` until `shutdown` completes, then lets
/// open connections finish their current request for at most
/// [`SHUTDOWN_GRACE`].
///
/// Connections are HTTP/1.1 with keep-alive; each runs on its own task of
/// the current tokio runtime.
///
/// # Errors
/// Only when accepting fails in a way that is not about one connection
/// (per-connection errors, such as too many open files or a peer reset,
/// are survived).
pub async fn serve<F>(listener: TcpListener, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let graceful = GracefulShutdown::new();
    let service = service_fn(|req: Request<Incoming>| {
        let reg = registry();
        let resp = reg.answer(req.method(), req.uri().path());
        std::future::ready(Ok::<_, Infallible>(resp))
    });
    let builder = Arc::new({
        let mut b = http1::Builder::new();
        b.keep_alive(true)
            .header_read_timeout(Duration::from_secs(30))
            .timer(hyper_util::rt::TokioTimer::new());
        b
    });
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of descriptors and the like: back off and retry
                    // rather than spin or stop serving.
                    if matches!(e.raw_os_error(), Some(23 | 24)) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    return Err(e);
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A peer that goes away mid-request is its own business.
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    Ok(())
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// The record of the `i`-th person of the data set (all names, places and
/// numbers are invented).
fn person(i: usize, id: &str) -> Value {
    const NAMES: [(&str, &str, &str); 5] = [
        ("Nguyễn Văn An", "1999-03-14", "male"),
        ("Trần Thị Bình", "1985-11-02", "female"),
        ("Lê Hoàng Cường", "2003-07-21", "male"),
        ("Phạm Thu Dung", "1990-01-30", "female"),
        ("Võ Minh Em", "2001-09-09", "male"),
    ];
    const PLACES: [(&str, &str, &str); 5] = [
        ("Hà Nội", "Quận Ba Đình", "Phường Điện Biên"),
        ("Hà Nội", "Quận Hoàn Kiếm", "Phường Hàng Bạc"),
        ("Thành phố Hồ Chí Minh", "Quận 1", "Phường Bến Nghé"),
        ("Hải Phòng", "Quận Lê Chân", "Phường An Biên"),
        ("Quảng Ngãi", "Thành phố Quảng Ngãi", "Phường Trần Phú"),
    ];
    let (name, born, sex) = NAMES[i % NAMES.len()];
    let (province, district, ward) = PLACES[i % PLACES.len()];
    let (o_province, o_district, o_ward) = PLACES[(i + 2) % PLACES.len()];
    json!({
        "id": id,
        "full_name": name,
        "date_of_birth": born,
        "sex": sex,
        "nationality": "VN",
        "ethnicity": "Kinh",
        "religion": "none",
        "place_of_birth": {"province": o_province, "district": o_district},
        "place_of_origin": {"province": o_province, "district": o_district, "ward": o_ward},
        "permanent_residence": {
            "province": province, "district": district, "ward": ward,
            "street": format!("Số {} ngõ {} phố Mẫu", 10 + i * 7, 3 + i),
        },
        "current_residence": {
            "province": province, "district": district, "ward": ward,
            "street": format!("Số {} ngõ {} phố Mẫu", 10 + i * 7, 3 + i),
        },
        "identity_card": {
            "number": id,
            "issued_on": "2021-06-01",
            "issued_by": "Cục Cảnh sát quản lý hành chính về trật tự xã hội",
            "expires_on": "2039-03-14",
        },
        "household": {"head_id": PERSON_IDS[(i + 1) % PERSON_IDS.len()], "relation_to_head": "child"},
        "marital_status": if i.is_multiple_of(2) { "single" } else { "married" },
        "updated_at": "2026-01-15T08:30:00+07:00",
        "note": "Fictional sample data of the NDXP examples; no real person.",
    })
}

/// The OpenAPI 3.1 document of the registry.
pub fn openapi_document() -> Value {
    let address = json!({
        "type": "object",
        "properties": {
            "province": {"type": "string"}, "district": {"type": "string"},
            "ward": {"type": "string"}, "street": {"type": "string"},
        },
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Citizen registry (NDXP sample backend)",
            "version": "1.0.0",
            "description": "Looks up a fictional citizen by identity number. The backend of the service VN/GOV/000.00.00.H29/CSDLDC/citizen/v1 in the NDXP demo.",
        },
        "paths": {
            "/persons/{id}": {
                "get": {
                    "operationId": "getPerson",
                    "summary": "The record of one citizen",
                    "parameters": [{
                        "name": "id", "in": "path", "required": true,
                        "description": "12-digit citizen identity number",
                        "schema": {"type": "string", "pattern": "^[0-9]{12}$"},
                        "example": "001099012345",
                    }],
                    "responses": {
                        "200": {"description": "The person", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Person"}}}},
                        "404": {"description": "No such person", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                    },
                },
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness",
                    "responses": {"200": {"description": "Alive", "content": {"text/plain": {"schema": {"type": "string"}}}}},
                },
            },
        },
        "components": {
            "schemas": {
                "Person": {
                    "type": "object",
                    "required": ["id", "full_name", "date_of_birth", "sex", "nationality"],
                    "properties": {
                        "id": {"type": "string"},
                        "full_name": {"type": "string"},
                        "date_of_birth": {"type": "string", "format": "date"},
                        "sex": {"type": "string", "enum": ["male", "female"]},
                        "nationality": {"type": "string"},
                        "ethnicity": {"type": "string"},
                        "religion": {"type": "string"},
                        "place_of_birth": address,
                        "place_of_origin": address,
                        "permanent_residence": address,
                        "current_residence": address,
                        "identity_card": {"type": "object"},
                        "household": {"type": "object"},
                        "marital_status": {"type": "string"},
                        "updated_at": {"type": "string", "format": "date-time"},
                        "note": {"type": "string"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "status"],
                    "properties": {
                        "error": {"type": "string"}, "status": {"type": "integer"},
                        "detail": {"type": "string"},
                    },
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_about_a_kibibyte() {
        let reg = Registry::new();
        for id in PERSON_IDS {
            let len = reg.person(id).map(Bytes::len).unwrap_or(0);
            assert!((800..=1500).contains(&len), "{id}: {len} bytes");
        }
    }

    #[test]
    fn unknown_paths_and_methods() {
        let reg = Registry::new();
        assert_eq!(reg.answer(&Method::GET, "/nope").status(), 404);
        assert_eq!(reg.answer(&Method::GET, "/persons/x").status(), 404);
        assert_eq!(reg.answer(&Method::GET, "/persons/").status(), 404);
        let r = reg.answer(&Method::POST, "/persons/001099012345");
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()[ALLOW], "GET, HEAD");
    }
}
