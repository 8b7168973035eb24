//! The token endpoint under abuse: a flood of wrong client secrets from
//! one address (for the victim's own client id, for a client id whose
//! secret is still a costly PBKDF2 hash of an earlier version, and for
//! unknown client ids) neither delays nor refuses a correct client calling
//! from another address, and every flood request ends with 401, or 429 and
//! `Retry-After`, never a hang.
#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use gateway_support::*;
use ndxp_gateway::gateway::token;
use ndxp_registry::model::Actor;
use ndxp_registry::store::gateway::GatewayStore;

/// The attacker's source address (any 127/8 address reaches loopback).
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Flood requests in flight at once.
const FLOOD: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_correct_client_gets_its_token_at_once_while_wrong_secrets_flood_the_endpoint() {
    let env = Env::start().await;
    let (_, consumer) = env.parties().await;
    // The victim: brand-new credentials, never used before the flood.
    let (victim, victim_secret) = env.credentials(&consumer).await;
    // A credential whose stored hash is the costly PBKDF2 form of earlier
    // versions: it keeps verifying.
    let (legacy, _) = env.credentials(&consumer).await;
    let legacy_secret = token::generate_secret().unwrap();
    let legacy_hash = token::hash_secret_with(&legacy_secret, token::PBKDF2_ITERATIONS).unwrap();
    env.store
        .rotate_gateway_secret(&legacy, &legacy_hash, &Actor::cli("test"))
        .await
        .unwrap();
    // The gateway sees the new hash after its next registry poll (until
    // then the new secret is refused).
    let mut legacy_ok = false;
    for _ in 0..50 {
        let (s, _) = env.token_request(&legacy, &legacy_secret).await;
        if s == 200 {
            legacy_ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        legacy_ok,
        "a PBKDF2 hash of an earlier version still verifies"
    );

    let url = env.gateway_url("/oauth2/token");
    let attacker = reqwest::Client::builder()
        .local_address(ATTACKER)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut flood = Vec::new();
    for i in 0..FLOOD {
        let (http, url) = (attacker.clone(), url.clone());
        let id = match i % 4 {
            0 | 1 => victim.clone(),
            2 => legacy.clone(),
            _ => format!("ndxpc_unknown{i}"),
        };
        flood.push(tokio::spawn(async move {
            token_request_to(&http, &url, &id, &format!("ndxps_wrong{i}")).await
        }));
    }
    // While the flood runs, the victim asks from its own address.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..3 {
        let started = Instant::now();
        let (s, v) = env.token_request(&victim, &victim_secret).await;
        assert_eq!(s, 200, "{v}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the correct client waited {:?}",
            started.elapsed()
        );
        // And the legacy client, whose secret matched before, too.
        let started = Instant::now();
        let (s, v) = env.token_request(&legacy, &legacy_secret).await;
        assert_eq!(s, 200, "{v}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    let (mut unauthorized, mut limited) = (0, 0);
    for f in flood {
        let (status, retry, v) = tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .expect("a flood request hung")
            .unwrap();
        match status {
            401 => {
                assert_eq!(v["error"], "invalid_client", "{v}");
                unauthorized += 1;
            }
            429 => {
                assert_eq!(v["code"], "ndxp.rate_limited", "{v}");
                let secs: u64 = retry.expect("429 without Retry-After").parse().unwrap();
                assert!((1..=60).contains(&secs), "Retry-After {secs}");
                limited += 1;
            }
            other => panic!("flood request answered {other}: {v}"),
        }
    }
    assert_eq!(unauthorized + limited, FLOOD);
    assert!(limited > 0, "the flooding address was never slowed down");
    // The attacker's address stays in backoff even with a right secret:
    // the refusal comes before any secret is checked.
    let (s, retry, v) = env
        .token_request_by(&attacker, &victim, &victim_secret)
        .await;
    assert_eq!((s, v["code"].as_str()), (429, Some("ndxp.rate_limited")));
    assert!(retry.is_some());
    // The victim is still served.
    assert!(!env.token(&victim, &victim_secret).await.is_empty());
    env.stop().await;
}
