//! `pki serve` under a flood: OCSP answers produced ahead of time are
//! served from the cache (byte for byte the same answer), a revocation
//! replaces the cached answer at once, and while 200 requests that need
//! live signing (OCSP requests with a nonce about many certificates, and
//! timestamp queries) arrive at once from one address, a good client at
//! another address still gets its OCSP answer and its timestamp within a
//! second; the excess gets `503` with `Retry-After`, never a hang.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ndxp_gateway::pki::{PkiLimits, PkiService};
use ndxp_sign::ca::Pki;
use ndxp_sign::ocsp::OcspClientRequest;
use ndxp_sign::openssl::hash::MessageDigest;
use ndxp_sign::openssl::ocsp::{OcspCertId, OcspRequest};
use ndxp_sign::revocation::{CertStatus, RevocationReason};
use ndxp_sign::tsa::{self, ImprintAlgorithm, TimestampRequest, TsaTrust};
use ndxp_test_support::pki::{init_pki, member_signer, node_auth_cert};

/// The flooding address (any 127/8 address reaches loopback).
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const FLOOD: usize = 200;
const OCSP_TYPE: &str = "application/ocsp-request";
const TSA_TYPE: &str = "application/timestamp-query";

async fn post(http: &reqwest::Client, url: &str, kind: &str, body: Vec<u8>) -> reqwest::Response {
    http.post(url)
        .header("content-type", kind)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Posts and returns the body of a `200` answer, and how long it took.
async fn answered(
    http: &reqwest::Client,
    url: &str,
    kind: &str,
    body: Vec<u8>,
) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let r = post(http, url, kind, body).await;
    assert_eq!(r.status(), 200, "{url}");
    let bytes = r.bytes().await.unwrap().to_vec();
    (bytes, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ocsp_and_tsa_answer_a_good_client_within_a_second_under_a_flood() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let pki = init_pki(&pki_dir, "http://127.0.0.1:9/ocsp");
    let member = "VN/GOV/000.00.00.G22".parse().unwrap();
    let good = member_signer(&pki, &member);
    let other = node_auth_cert(&pki, &member, &"node-g22".parse().unwrap());
    let limits = PkiLimits {
        signing_concurrency: 4,
        signing_per_address: 2,
        ..PkiLimits::default()
    };
    let service = Arc::new(
        PkiService::with_options(Pki::open(&pki_dir, None).unwrap(), None, limits).unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(ndxp_gateway::pki::serve(
        listener,
        service.clone(),
        std::future::pending(),
    ));
    tokio::spawn(service.clone().keep_answers_fresh(std::future::pending()));
    // Produced ahead of time for every issued certificate.
    let mut ready = false;
    for _ in 0..100 {
        if service.cached_answers() >= 2 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "answers were not produced ahead of time");

    let (ocsp_url, tsa_url) = (format!("{base}/ocsp"), format!("{base}/tsa"));
    let anchors = vec![pki.root_cert().clone()];
    let issuer = pki.issuing_cert().clone();
    let http = reqwest::Client::new();
    let plain = OcspClientRequest::with_options(good.cert(), &issuer, MessageDigest::sha1(), false)
        .unwrap();
    let (cached, _) = answered(&http, &ocsp_url, OCSP_TYPE, plain.der().to_vec()).await;
    let check = plain
        .verify_response(&cached, &anchors, Utc::now())
        .unwrap();
    assert_eq!(check.status, CertStatus::Good);

    // The flood: live signing only, all from one address, all at once.
    let attacker = reqwest::Client::builder()
        .local_address(ATTACKER)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let many = {
        // A request with a nonce about the same certificate 100 times:
        // the largest the responder accepts, never served from the cache.
        let mut req = OcspRequest::new().unwrap();
        for _ in 0..100 {
            req.add_id(OcspCertId::from_cert(MessageDigest::sha1(), &other, &issuer).unwrap())
                .unwrap();
        }
        req.to_der().unwrap()
    };
    let start = Arc::new(tokio::sync::Barrier::new(FLOOD + 1));
    let mut flood = Vec::new();
    for i in 0..FLOOD {
        let (http, start) = (attacker.clone(), start.clone());
        let (url, kind, body) = if i % 2 == 0 {
            (ocsp_url.clone(), OCSP_TYPE, many.clone())
        } else {
            let q = TimestampRequest::for_data(ImprintAlgorithm::Sha256, &i.to_be_bytes()).unwrap();
            (tsa_url.clone(), TSA_TYPE, q.der().to_vec())
        };
        flood.push(tokio::spawn(async move {
            start.wait().await;
            let r = post(&http, &url, kind, body).await;
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), retry)
        }));
    }
    start.wait().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The good client, meanwhile: the cached OCSP answer, an OCSP answer
    // signed live for a request with a nonce, and a timestamp.
    for _ in 0..3 {
        let (again, took) = answered(&http, &ocsp_url, OCSP_TYPE, plain.der().to_vec()).await;
        assert!(
            took < Duration::from_secs(1),
            "cached OCSP answer took {took:?}"
        );
        assert_eq!(again, cached, "served from the cache, not signed again");

        let with_nonce = OcspClientRequest::new(good.cert(), &issuer).unwrap();
        let (live, took) = answered(&http, &ocsp_url, OCSP_TYPE, with_nonce.der().to_vec()).await;
        assert!(
            took < Duration::from_secs(1),
            "live OCSP answer took {took:?}"
        );
        let check = with_nonce
            .verify_response(&live, &anchors, Utc::now())
            .unwrap();
        assert_eq!(check.status, CertStatus::Good);

        let q = TimestampRequest::for_data(ImprintAlgorithm::Sha256, b"good client").unwrap();
        let (resp, took) = answered(&http, &tsa_url, TSA_TYPE, q.der().to_vec()).await;
        assert!(took < Duration::from_secs(1), "timestamp took {took:?}");
        let trust = TsaTrust::new(anchors.clone()).with_untrusted(pki.chain().to_vec());
        tsa::verify_response(&resp, &q, &trust).unwrap();
    }
    let mut busy = 0;
    for f in flood {
        let (status, retry) = tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("a flood request hung")
            .unwrap();
        match status {
            200 => {}
            503 => {
                assert_eq!(retry.as_deref(), Some("1"), "503 without Retry-After");
                busy += 1;
            }
            other => panic!("flood request answered {other}"),
        }
    }
    assert!(
        busy > 0,
        "200 simultaneous requests from one address were never refused"
    );

    // A revocation (as by `pki revoke` in another process) replaces the
    // cached answer on the next request.
    Pki::open(&pki_dir, None)
        .unwrap()
        .revoke(good.cert(), RevocationReason::KeyCompromise, Utc::now())
        .unwrap();
    let (after, _) = answered(&http, &ocsp_url, OCSP_TYPE, plain.der().to_vec()).await;
    assert_ne!(after, cached);
    let check = plain.verify_response(&after, &anchors, Utc::now()).unwrap();
    assert!(
        matches!(
            check.status,
            CertStatus::Revoked {
                reason: RevocationReason::KeyCompromise,
                ..
            }
        ),
        "{:?}",
        check.status
    );
    // And the revoked answer is itself kept.
    let (again, _) = answered(&http, &ocsp_url, OCSP_TYPE, plain.der().to_vec()).await;
    assert_eq!(again, after);
}
