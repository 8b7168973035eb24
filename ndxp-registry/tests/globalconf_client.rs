//! The node-side client against a local HTTP server that serves changing
//! documents: refresh, rollback refusal, last-good on disk, expiry, run.

#![allow(clippy::unwrap_used)]

mod globalconf_support;

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use chrono::TimeDelta;
use globalconf_support::*;
use ndxp_registry::globalconf::{
    ConfClient, ConfError, RefreshOutcome, LAST_GOOD_FILE, MAX_DOCUMENT_LEN, MEDIA_TYPE,
};

#[derive(Clone)]
struct Served {
    status: StatusCode,
    body: String,
}

type Shared = Arc<Mutex<Served>>;

async fn serve_conf(State(s): State<Shared>) -> impl IntoResponse {
    let s = s.lock().unwrap().clone();
    (s.status, [(header::CONTENT_TYPE, MEDIA_TYPE)], s.body)
}

/// A server on 127.0.0.1:0 serving whatever `Shared` holds at
/// `/globalconf`; returns the URL.
async fn start_server(shared: Shared) -> String {
    let app = Router::new()
        .route("/globalconf", get(serve_conf))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/globalconf")
}

struct Env {
    f: Fixture,
    shared: Shared,
    url: String,
    dir: std::path::PathBuf,
}

impl Env {
    async fn new() -> Self {
        let f = Fixture::new();
        let shared = Arc::new(Mutex::new(Served {
            status: StatusCode::NOT_FOUND,
            body: String::new(),
        }));
        let url = start_server(shared.clone()).await;
        let dir = f.tmp.path().join("node-conf");
        Env {
            f,
            shared,
            url,
            dir,
        }
    }

    fn serve(&self, body: String) {
        *self.shared.lock().unwrap() = Served {
            status: StatusCode::OK,
            body,
        };
    }

    fn client(&self) -> ConfClient {
        ConfClient::new(
            self.f.anchor(&self.url),
            self.dir.clone(),
            reqwest::Client::new(),
        )
    }

    /// A new environment whose client holds the signed document of
    /// `version` (fetched from the server); that document as served.
    async fn holding(version: u64) -> (Env, ConfClient, String) {
        let env = Env::new().await;
        let client = env.client();
        let signed = env.f.signed(version);
        env.serve(signed.clone());
        client.refresh(env.f.now).await.unwrap();
        (env, client, signed)
    }

    fn on_disk(&self) -> String {
        std::fs::read_to_string(self.dir.join(LAST_GOOD_FILE)).unwrap()
    }
}

#[tokio::test]
async fn refresh_writes_last_good_and_a_new_client_reloads_it() {
    let env = Env::new().await;
    let client = env.client();
    let now = env.f.now;
    assert!(client.current().is_none());
    assert!(matches!(
        client.current_valid(now),
        Err(ConfError::NotLoaded)
    ));
    assert!(client.load_last_good(now).unwrap().is_none());

    let v1 = env.f.signed(1);
    env.serve(v1.clone());
    assert_eq!(
        client.refresh(now).await.unwrap(),
        RefreshOutcome::Updated { from: None, to: 1 }
    );
    assert_eq!(env.on_disk(), v1);
    assert_eq!(client.current_valid(now).unwrap().version, 1);
    assert_eq!(
        client.refresh(now).await.unwrap(),
        RefreshOutcome::Unchanged { version: 1 }
    );

    // The server adds a newline: still the same document.
    let v2 = env.f.signed(2);
    env.serve(format!("{v2}\r\n"));
    assert_eq!(
        client.refresh(now).await.unwrap(),
        RefreshOutcome::Updated {
            from: Some(1),
            to: 2
        }
    );
    assert_eq!(env.on_disk(), v2);
    let path = env.dir.join(LAST_GOOD_FILE);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600,
        "the last-good file is readable by its owner only"
    );
    // Only the last-good file: no temporary file left behind.
    let names: Vec<String> = std::fs::read_dir(&env.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![LAST_GOOD_FILE.to_string()]);

    let status = client.status(now + TimeDelta::seconds(30));
    assert_eq!(status.version, Some(2));
    assert_eq!(status.age_secs, Some(30));
    assert!(status.valid && !status.expired);
    assert_eq!(status.last_error, None);

    // A restarted node, with the server down, starts from the file.
    env.shared.lock().unwrap().status = StatusCode::SERVICE_UNAVAILABLE;
    let restarted = env.client();
    assert_eq!(restarted.load_last_good(now).unwrap().unwrap().version, 2);
    assert_eq!(restarted.current_valid(now).unwrap().version, 2);
    assert!(matches!(
        restarted.refresh(now).await,
        Err(ConfError::Status(503))
    ));
    assert_eq!(restarted.current().unwrap().version, 2);
    let status = restarted.status(now);
    assert!(status.last_error.unwrap().contains("503"));
    assert!(
        status.fetched_at.is_some(),
        "file time stands in for the fetch time"
    );
}

#[tokio::test]
async fn older_version_is_refused_and_the_held_one_kept() {
    let (env, client, v3) = Env::holding(3).await;
    let now = env.f.now;
    env.serve(env.f.signed(2));
    match client.refresh(now).await {
        Err(ConfError::Older { held, offered }) => assert_eq!((held, offered), (3, 2)),
        other => panic!("{other:?}"),
    }
    assert_eq!(client.current().unwrap().version, 3);
    assert_eq!(env.on_disk(), v3);
    let status = client.status(now);
    assert!(status
        .last_error
        .unwrap()
        .contains("version 3 is already held"));
    // A newer one clears the error.
    env.serve(env.f.signed(4));
    client.refresh(now).await.unwrap();
    assert_eq!(client.status(now).last_error, None);
}

#[tokio::test]
async fn a_re_signed_version_with_a_later_expiry_renews() {
    let (env, client, _) = Env::holding(5).await;
    let now = env.f.now;
    let later = env.f.doc_at(5, now + TimeDelta::hours(1));
    env.serve(env.f.sign(&later));
    let at = now + TimeDelta::hours(2);
    assert_eq!(
        client.refresh(at).await.unwrap(),
        RefreshOutcome::Renewed { version: 5 }
    );
    assert_eq!(client.current().unwrap().expires_at, later.expires_at);
    // The earlier signature of the same version does not replace it back.
    env.serve(env.f.signed(5));
    assert_eq!(
        client.refresh(at).await.unwrap(),
        RefreshOutcome::Unchanged { version: 5 }
    );
    assert_eq!(client.current().unwrap().expires_at, later.expires_at);
}

#[tokio::test]
async fn bad_offers_never_replace_the_held_document() {
    let (env, client, v1) = Env::holding(1).await;
    let now = env.f.now;

    // Tampered signature.
    let v2 = env.f.signed(2);
    let (head, sig) = v2.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    env.serve(format!("{head}.{flipped}{}", &sig[1..]));
    let err = client.refresh(now).await.unwrap_err();
    assert!(matches!(err, ConfError::Signature(_)), "{err:?}");

    // An expired document.
    env.serve(env.f.sign(&env.f.doc_at(9, now - TimeDelta::days(2))));
    let err = client.refresh(now).await.unwrap_err();
    assert!(matches!(err, ConfError::Expired { .. }), "{err:?}");

    // Not a JWS.
    env.serve("<html>maintenance</html>".into());
    let err = client.refresh(now).await.unwrap_err();
    assert!(matches!(err, ConfError::Envelope(_)), "{err:?}");

    // Too large: refused while reading, not after.
    env.serve("a".repeat(MAX_DOCUMENT_LEN + 1));
    let err = client.refresh(now).await.unwrap_err();
    assert!(matches!(err, ConfError::TooLarge { .. }), "{err:?}");

    env.shared.lock().unwrap().status = StatusCode::INTERNAL_SERVER_ERROR;
    assert!(matches!(
        client.refresh(now).await,
        Err(ConfError::Status(500))
    ));

    assert_eq!(client.current().unwrap().version, 1);
    assert_eq!(env.on_disk(), v1);
}

#[tokio::test]
async fn unreachable_server_is_a_fetch_error() {
    let env = Env::new().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = ConfClient::new(
        env.f.anchor(&format!("http://{addr}/globalconf")),
        env.dir.clone(),
        reqwest::Client::new(),
    )
    .with_fetch_timeout(Duration::from_secs(5));
    assert!(matches!(
        client.refresh(env.f.now).await,
        Err(ConfError::Fetch(_))
    ));
}

#[tokio::test]
async fn expired_document_is_held_but_not_valid() {
    let (env, client, _) = Env::holding(1).await;
    let now = env.f.now;
    let later = now + TimeDelta::days(2);
    assert!(matches!(
        client.current_valid(later),
        Err(ConfError::Expired { .. })
    ));
    assert_eq!(client.current().unwrap().version, 1);
    let status = client.status(later);
    assert!(status.expired && !status.valid);
    assert!(status.expires_in_secs.unwrap() < 0);

    // A restarted node loads the expired last-good file, reports it, and
    // refuses to serve on it.
    let restarted = env.client();
    assert_eq!(restarted.load_last_good(later).unwrap().unwrap().version, 1);
    assert!(matches!(
        restarted.current_valid(later),
        Err(ConfError::Expired { .. })
    ));
    assert!(restarted.status(later).expired);
}

#[tokio::test]
async fn a_damaged_last_good_file_is_refused() {
    let (env, _client, _) = Env::holding(1).await;
    let path = env.dir.join(LAST_GOOD_FILE);
    let good = env.on_disk();
    let cut = &good[..good.len() / 2];
    for damaged in [cut.as_bytes(), b"\xff\xfe".as_slice(), b"".as_slice()] {
        std::fs::write(&path, damaged).unwrap();
        let restarted = env.client();
        assert!(restarted.load_last_good(env.f.now).is_err());
        assert!(restarted.current().is_none());
    }
}

#[tokio::test]
async fn a_document_that_cannot_be_written_is_not_held() {
    let env = Env::new().await;
    // The client's directory path runs through a regular file.
    let blocker = env.f.tmp.path().join("blocker");
    std::fs::write(&blocker, b"").unwrap();
    let client = ConfClient::new(
        env.f.anchor(&env.url),
        blocker.join("conf"),
        reqwest::Client::new(),
    );
    env.serve(env.f.signed(1));
    let err = client.refresh(env.f.now).await.unwrap_err();
    assert!(matches!(err, ConfError::Io { .. }), "{err:?}");
    assert!(client.current().is_none());
}

#[tokio::test]
async fn run_picks_up_new_versions_and_stops_on_shutdown() {
    let env = Env::new().await;
    let client = Arc::new(env.client());
    env.serve(env.f.signed(1));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .run(Duration::from_millis(20), async {
                    let _ = stopped.await;
                })
                .await;
        })
    };
    let wait_for = |version: u64| {
        let client = client.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(20), async {
                while client.current().map(|d| d.version) != Some(version) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("version {version} not picked up"));
        }
    };
    wait_for(1).await;
    // A failure in between does not drop the held document.
    env.serve("garbage".into());
    tokio::time::timeout(Duration::from_secs(20), async {
        while client.status(chrono::Utc::now()).last_error.is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(client.current().unwrap().version, 1);
    env.serve(env.f.signed(2));
    wait_for(2).await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap();
}
