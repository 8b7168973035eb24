//! The central gateway's metrics end to end: calls that succeed, are
//! refused by the rate limit, carry a bad token or name an unknown
//! service, and token requests that succeed or fail, through a real
//! gateway; then `/metrics` on the admin port shows each with its labels.
#![allow(clippy::unwrap_used)]

mod gateway_support;

use gateway_support::*;
use ndxp_test_support::metrics::{catalogue, exposed};
use serde_json::json;

/// The value of the sample `name{labels}` in `text`, or 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn calls_and_tokens_are_counted_by_service_client_and_outcome() {
    let env = Env::start().await;
    let Calling {
        id, secret, token, ..
    } = env.calling(json!({"rate_per_sec": 1, "burst": 2})).await;
    assert_eq!(env.call(&token, SERVICE_V1, "/p").await.status(), 200);
    assert_eq!(env.call(&token, SERVICE_V1, "/p").await.status(), 200);
    assert_eq!(env.call(&token, SERVICE_V1, "/p").await.status(), 429);
    assert_eq!(
        env.call("not-a-token", SERVICE_V1, "/p").await.status(),
        401
    );
    let unknown = "VN/GOV/000.00.00.H29/CSDLDC/nothing/v1";
    assert_eq!(env.call(&token, unknown, "/p").await.status(), 404);
    let (status, _) = env.token_request(&id, "wrong secret").await;
    assert_eq!(status, 401);
    let _second = env.token(&id, &secret).await;
    // A management API error, so that every family has a sample.
    let (status, _) = env.api("GET", "/api/v1/members", "wrong", None).await;
    assert_eq!(status, 401);

    let m = env.admin_text("/metrics").await;
    let calls = |status: u16, code: &str, client: &str, service: &str| {
        sample(
            &m,
            &format!(
                "ndxp_gateway_requests_total{{service=\"{service}\",client=\"{client}\",status=\"{status}\",code=\"{code}\"}}"
            ),
        )
    };
    assert_eq!(calls(200, "", CONSUMER_SUB, SERVICE_V1), 2.0, "{m}");
    assert_eq!(
        calls(429, "ndxp.rate_limited", CONSUMER_SUB, SERVICE_V1),
        1.0,
        "{m}"
    );
    // A bad token: the service is known, the client is not.
    assert_eq!(
        calls(401, "ndxp.unauthorized", "unknown", SERVICE_V1),
        1.0,
        "{m}"
    );
    // The path a caller sent never becomes a label.
    assert_eq!(
        calls(404, "ndxp.service_unknown", "unknown", "unknown"),
        1.0,
        "{m}"
    );
    assert!(!m.contains("nothing/v1"), "{m}");
    assert_eq!(
        sample(&m, "ndxp_gateway_rate_limited_total{limit=\"rate\"}"),
        1.0,
        "{m}"
    );
    // Two successful calls went to the backend; five were answered.
    let service = format!("{{service=\"{SERVICE_V1}\"}}");
    assert_eq!(
        sample(
            &m,
            &format!("ndxp_gateway_upstream_duration_seconds_count{service}")
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            &format!("ndxp_gateway_request_duration_seconds_count{service}")
        ),
        4.0,
        "{m}"
    );
    assert!(
        sample(
            &m,
            &format!("ndxp_gateway_request_duration_seconds_sum{service}")
        ) > 0.0,
        "{m}"
    );
    assert_eq!(sample(&m, "ndxp_gateway_tokens_issued_total"), 2.0, "{m}");
    assert_eq!(
        sample(
            &m,
            "ndxp_gateway_tokens_refused_total{reason=\"invalid_client\"}"
        ),
        1.0,
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "ndxp_build_info{{version=\"{}\",",
            env!("CARGO_PKG_VERSION")
        )),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "ndxp_management_errors_total{code=\"ndxp.unauthorized\"}"
        ),
        1.0,
        "{m}"
    );
    // docs/monitoring.md lists exactly what the process exposes.
    assert_eq!(
        exposed(&m),
        catalogue("gateway"),
        "docs/monitoring.md's gateway catalogue"
    );
    env.stop().await;
}
