//! [`HttpTsa`]: RFC 3161 over HTTP(S) with `reqwest` (the `tsa-client`
//! feature).

use std::time::Duration;

use async_trait::async_trait;
use ndxp_sign::tsa;

use super::{TimestampError, TransportError, TsaTransport, QUERY_TYPE, REPLY_TYPE};

/// RFC 3161 over HTTP: `POST` of `application/timestamp-query`.
#[derive(Debug, Clone)]
pub struct HttpTsa {
    url: String,
    client: reqwest::Client,
}

impl HttpTsa {
    /// A client for the TSA at `url` (e.g. `http://ca.example/tsa`) with a
    /// time limit per request.
    ///
    /// # Errors
    /// [`TimestampError::Client`].
    pub fn new(url: &str, timeout: Duration) -> Result<Self, TimestampError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| TimestampError::Client(Box::new(e)))?;
        Ok(Self {
            url: url.to_string(),
            client,
        })
    }
}

#[async_trait]
impl TsaTransport for HttpTsa {
    async fn query(&self, query: &[u8]) -> Result<Vec<u8>, TransportError> {
        let unreachable = |e: reqwest::Error| TransportError::Unreachable {
            url: self.url.clone(),
            detail: e.without_url().to_string(),
        };
        let resp = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, QUERY_TYPE)
            .body(query.to_vec())
            .send()
            .await
            .map_err(unreachable)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(TransportError::BadAnswer {
                url: self.url.clone(),
                detail: format!("HTTP {status}"),
            });
        }
        let ctype = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if !ctype
            .split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case(REPLY_TYPE))
        {
            return Err(TransportError::BadAnswer {
                url: self.url.clone(),
                detail: format!("content type {ctype:?}, not {REPLY_TYPE}"),
            });
        }
        if resp
            .content_length()
            .is_some_and(|l| l > tsa::MAX_RESPONSE_LEN as u64)
        {
            return Err(TransportError::BadAnswer {
                url: self.url.clone(),
                detail: "a reply larger than 1 MiB".into(),
            });
        }
        let body = resp.bytes().await.map_err(unreachable)?;
        Ok(body.to_vec())
    }
}
