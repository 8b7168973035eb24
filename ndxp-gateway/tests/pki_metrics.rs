//! `pki serve`'s metrics on its admin listener: OCSP answers from the
//! cache, signed now and refused, timestamps granted, each counted by
//! result, with signing times; and the catalogue of `docs/monitoring.md`
//! lists exactly what the scrape exposes.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ndxp_gateway::pki::PkiService;
use ndxp_sign::ca::Pki;
use ndxp_sign::ocsp::OcspClientRequest;
use ndxp_sign::openssl::hash::MessageDigest;
use ndxp_sign::tsa::{ImprintAlgorithm, TimestampRequest};
use ndxp_test_support::metrics::{catalogue, exposed};
use ndxp_test_support::pki::{init_pki, member_signer};

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

async fn post(http: &reqwest::Client, url: &str, kind: &str, body: Vec<u8>) -> u16 {
    http.post(url)
        .header("content-type", kind)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocsp_and_timestamp_answers_are_counted_on_the_admin_port() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let pki = init_pki(&pki_dir, "http://127.0.0.1:9/ocsp");
    let member = "VN/GOV/000.00.00.G22".parse().unwrap();
    let signer = member_signer(&pki, &member);
    let service = Arc::new(PkiService::new(Pki::open(&pki_dir, None).unwrap()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let admin_url = format!("http://{}/metrics", admin.local_addr().unwrap());
    tokio::spawn(ndxp_gateway::pki::serve(
        listener,
        service.clone(),
        std::future::pending(),
    ));
    tokio::spawn({
        let service = service.clone();
        async move {
            ndxp_gateway::pki::serve_admin(
                admin,
                service,
                &ndxp_edge::EdgeSettings::default(),
                std::future::pending(),
            )
            .await;
        }
    });
    let http = reqwest::Client::new();
    let (ocsp, tsa) = (format!("{base}/ocsp"), format!("{base}/tsa"));
    let ocsp_type = "application/ocsp-request";
    let issuer = pki.issuing_cert().clone();
    // Without a nonce: signed the first time, then served from the cache.
    let plain =
        OcspClientRequest::with_options(signer.cert(), &issuer, MessageDigest::sha1(), false)
            .unwrap();
    assert_eq!(
        post(&http, &ocsp, ocsp_type, plain.der().to_vec()).await,
        200
    );
    assert_eq!(
        post(&http, &ocsp, ocsp_type, plain.der().to_vec()).await,
        200
    );
    assert_eq!(
        post(&http, &ocsp, ocsp_type, plain.der().to_vec()).await,
        200
    );
    // Not an OCSP request: answered malformedRequest.
    assert_eq!(post(&http, &ocsp, ocsp_type, b"junk".to_vec()).await, 200);
    let q = TimestampRequest::for_data(ImprintAlgorithm::Sha256, b"log batch").unwrap();
    assert_eq!(
        post(&http, &tsa, "application/timestamp-query", q.der().to_vec()).await,
        200
    );

    let m = http.get(&admin_url).send().await.unwrap();
    assert_eq!(m.status(), 200);
    assert!(m.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let m = m.text().await.unwrap();
    let ocsp_result = |r: &str| {
        sample(
            &m,
            &format!("ndxp_pki_ocsp_requests_total{{result=\"{r}\"}}"),
        )
    };
    assert_eq!(ocsp_result("signed"), 1.0, "{m}");
    assert_eq!(ocsp_result("cached"), 2.0, "{m}");
    assert_eq!(ocsp_result("refused"), 1.0, "{m}");
    assert_eq!(
        sample(&m, "ndxp_pki_tsa_requests_total{result=\"granted\"}"),
        1.0,
        "{m}"
    );
    for kind in ["ocsp", "tsa"] {
        assert_eq!(
            sample(
                &m,
                &format!("ndxp_pki_signing_duration_seconds_count{{kind=\"{kind}\"}}")
            ),
            1.0,
            "{m}"
        );
    }
    assert!(sample(&m, "ndxp_pki_ocsp_cached_answers") >= 1.0, "{m}");
    assert_eq!(
        sample(&m, "ndxp_pki_connections_open{listener=\"admin\"}"),
        1.0,
        "{m}"
    );
    assert_eq!(
        exposed(&m),
        catalogue("pki"),
        "docs/monitoring.md's pki catalogue"
    );
    // The public port does not serve the metrics.
    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}
