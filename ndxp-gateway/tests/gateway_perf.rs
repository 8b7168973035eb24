//! Throughput of the gateway path against the direct backend path, in one
//! run with the same client and concurrency (64 connections, 1 KiB JSON):
//! token check, subscription, rate limiter (a high limit) and message log
//! all on. Ignored by default (it measures, and needs a release build):
//!
//! ```text
//! cargo test --release -p ndxp-gateway --test gateway_perf -- --ignored --nocapture
//! ```
//!
//! `cargo xtask bench gateway` is the project's benchmark; this test is
//! the quick check that the request path stays lean.
#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::time::{Duration, Instant};

use gateway_support::*;
use serde_json::json;

const CONNECTIONS: usize = 64;
const SECONDS: u64 = 5;

async fn kib_backend() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = format!("{{\"data\":\"{}\"}}", "x".repeat(1024 - 11));
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { ([("content-type", "application/json")], body) }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Requests per second and (p50, p99) latency in ms.
async fn load(url: String, token: Option<String>) -> (f64, f64, f64) {
    // Clients first (each loads the system trust store): not timed.
    let clients: Vec<reqwest::Client> = (0..CONNECTIONS)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let mut tasks = Vec::new();
    for client in clients {
        let (url, token) = (url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let mut rb = client.get(&url);
                if let Some(tok) = &token {
                    rb = rb.bearer_auth(tok);
                }
                let r = rb.send().await.unwrap();
                assert_eq!(r.status(), 200);
                let b = r.bytes().await.unwrap();
                assert!(b.len() >= 1024);
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: f64| ms(all[((all.len() as f64 * p) as usize).min(all.len() - 1)]);
    (all.len() as f64 / SECONDS as f64, pct(0.50), pct(0.99))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measures throughput; run with --release --ignored"]
async fn the_gateway_reaches_30_percent_of_the_direct_rate() {
    let env = Env::start().await;
    let (provider, consumer) = env.parties().await;
    let url = kib_backend().await;
    env.offer(
        &provider,
        SERVICE_V1,
        &url,
        json!({"rate_per_sec": 1_000_000, "burst": 1_000_000}),
    )
    .await;
    env.subscribe(&consumer, &provider, SERVICE_V1).await;
    let (id, secret) = env.credentials(&consumer).await;
    let token = env.token(&id, &secret).await;

    let (direct_rps, direct_p50, direct_p99) = load(format!("{url}/data"), None).await;
    let (rps, p50, p99) = load(env.gateway_url(&format!("/{SERVICE_V1}/data")), Some(token)).await;
    println!("connections {CONNECTIONS}, {SECONDS} s each, 1 KiB JSON");
    println!("path     rps       p50_ms  p99_ms");
    println!("direct   {direct_rps:<9.0} {direct_p50:<7.2} {direct_p99:.2}");
    println!("gateway  {rps:<9.0} {p50:<7.2} {p99:.2}");
    println!("ratio    {:.1} %", 100.0 * rps / direct_rps);
    assert!(
        rps >= 0.30 * direct_rps,
        "the gateway reached {rps:.0} rps, under 30% of the direct {direct_rps:.0} rps"
    );
    env.stop().await;
}
