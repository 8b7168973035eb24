//! Message-log fixtures (feature `audit`): a signed exchange as a
//! consumer's node logs it, and the test PKI's time-stamping authority in
//! this process behind [`TsaTransport`].

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use ndxp_audit::log::{Exchange, Role, SignedMeta};
use ndxp_audit::timestamp::{TransportError, TsaTransport};
use ndxp_core::TransactionId;
use ndxp_sign::ca::Pki;
use ndxp_sign::tsa::{TimestampAuthority, TsaTrust};
use ndxp_sign::{digest, profile};

/// A `GET .../citizen/v1/persons/{n}` from `VN/GOV/000.00.00.G22/QLHT`,
/// signed by `signer` now, as the consumer's node logs it (no response).
pub fn signed_exchange(signer: &profile::Signer, n: u32) -> Exchange {
    let id = TransactionId::new();
    let (mut parts, ()) = http::Request::get(format!(
        "https://provider.example/r1/VN/GOV/000.00.00.H29/CSDLDC/citizen/v1/persons/{n}"
    ))
    .header(profile::NDXP_CLIENT, "VN/GOV/000.00.00.G22/QLHT")
    .header(profile::NDXP_ID, id.to_string())
    .body(())
    .expect("a valid request")
    .into_parts();
    let cd = digest::content_digest(b"");
    let info =
        profile::sign_request(&mut parts, &cd, signer, Utc::now()).expect("the test signer signs");
    let now = Utc::now();
    Exchange {
        transaction_id: id,
        client: "VN/GOV/000.00.00.G22/QLHT".parse().expect("identifier"),
        service: "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1"
            .parse()
            .expect("identifier"),
        role: Role::Consumer,
        received_at: now,
        forwarded_at: Some(now),
        backend_answered_at: Some(now),
        responded_at: now,
        status: 200,
        problem_code: None,
        request_bytes: 0,
        response_bytes: 17,
        user_id: None,
        request_id: None,
        request: SignedMeta::signed_by(info, cd, signer).expect("certificate DER"),
        response: None,
        body: None,
        trace_id: None,
    }
}

/// The TSA of a test PKI, answering in this process.
#[derive(Debug)]
pub struct LocalTsa(pub Arc<TimestampAuthority>);

impl LocalTsa {
    /// The TSA of `pki` (its TSA certificate and key, with the chain).
    pub fn new(pki: &Pki) -> Self {
        let tsa = TimestampAuthority::new(pki.tsa_cert(), pki.tsa_key())
            .expect("the test PKI's TSA")
            .with_chain(pki.chain().to_vec());
        Self(Arc::new(tsa))
    }

    /// Trust in `pki`'s TSA, for verifying its tokens.
    pub fn trust(pki: &Pki) -> TsaTrust {
        TsaTrust::new(vec![pki.root_cert().clone()]).with_untrusted(pki.chain().to_vec())
    }
}

#[async_trait]
impl TsaTransport for LocalTsa {
    async fn query(&self, query: &[u8]) -> Result<Vec<u8>, TransportError> {
        Ok(self.0.respond(query).der)
    }
}
