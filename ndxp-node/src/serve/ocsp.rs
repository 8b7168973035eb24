//! Revocation for the node: the shared [`OcspHub`] of `ndxp-sign`, asking
//! the responders over the node's HTTP client.

use std::time::Duration;

pub use ndxp_sign::ocsp_hub::{Lenient, OcspHub, RevocationError};
use ndxp_sign::ocsp_hub::{FetchFuture, OcspFetch, MAX_RESPONSE_BYTES};

/// How long one OCSP request may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// An [`OcspFetch`] over `http`: POST, 10 s timeout, 2xx only.
pub fn fetcher(http: reqwest::Client) -> OcspFetch {
    std::sync::Arc::new(move |url: String, der: Vec<u8>| -> FetchFuture {
        let http = http.clone();
        Box::pin(async move {
            let resp = http
                .post(&url)
                .header("content-type", "application/ocsp-request")
                .body(der)
                .timeout(FETCH_TIMEOUT)
                .send()
                .await
                .map_err(|e| format!("cannot be reached ({e})"))?;
            if !resp.status().is_success() {
                return Err(format!("answered HTTP {}", resp.status()));
            }
            if resp
                .content_length()
                .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
            {
                return Err(format!("sent an answer over {MAX_RESPONSE_BYTES} bytes"));
            }
            resp.bytes()
                .await
                .map(|b| b.to_vec())
                .map_err(|e| e.to_string())
        })
    })
}
