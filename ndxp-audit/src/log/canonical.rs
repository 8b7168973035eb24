//! The write path's encoder of a record's canonical encoding (module docs
//! of [`super`]) and of its stored form, in one pass over the exchange.
//!
//! The canonical encoding is defined as `serde_json`'s compact output of
//! [`super::LogRecord`]; this encoder writes the same bytes by hand so that
//! the large members known to need no escaping (base64 certificates and
//! bodies, hex) are copied instead of scanned character by character, and
//! so that the exchange part, which does not depend on the chain, can be
//! encoded by the appending task before the single log writer chains it.
//! Every other value goes through `serde_json` itself. The tests compare
//! the output byte for byte with `serde_json::to_vec` of the record.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ndxp_sign::openssl::sha::{sha256, Sha256};
use serde::Serialize;

use super::{Bodies, ChainHash, Exchange, SignedMeta};

/// A certificate as the store keeps it: SHA-256 (lowercase hex) and DER.
pub(crate) type CertRow = (String, Vec<u8>);

/// The exchange part of a record, encoded both ways (the stored form is
/// read only by the SQL log of the `store` feature).
#[derive(Debug)]
#[cfg_attr(not(feature = "store"), allow(dead_code))]
pub(crate) struct EncodedExchange {
    /// The exchange as in the canonical encoding (certificates in base64).
    pub(crate) canonical: Vec<u8>,
    /// The exchange as stored (certificates as `signer_cert_sha256` and
    /// `chain_sha256`); empty when not asked for.
    pub(crate) stored: Vec<u8>,
    /// The certificates the stored form refers to.
    pub(crate) certs: Vec<CertRow>,
}

/// The SHA-256 (hex) of recently seen certificates: a node's records carry
/// the same few certificates again and again, and comparing bytes costs
/// less than hashing them.
#[derive(Debug, Default)]
pub(crate) struct CertHashes(std::sync::Mutex<Vec<(Vec<u8>, String)>>);

impl CertHashes {
    /// At most this many certificates are remembered (the oldest goes).
    const KEEP: usize = 16;

    fn hex_of(&self, der: &[u8]) -> String {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, h)) = seen.iter().find(|(d, _)| d.as_slice() == der) {
            return h.clone();
        }
        let h = hex_string(&sha256(der));
        if seen.len() >= Self::KEEP {
            seen.remove(0);
        }
        seen.push((der.to_vec(), h.clone()));
        h
    }
}

/// Lowercase hex of `bytes`, appended to `out`.
pub(crate) fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = out.len();
    out.resize(start + bytes.len() * 2, 0);
    // The buffer was sized for exactly this encoding.
    let _ = hex::encode_to_slice(bytes, &mut out[start..]);
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex_string(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Writes `v` as `serde_json` does (compact).
fn json<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) -> Result<(), serde_json::Error> {
    serde_json::to_writer(&mut *out, v)
}

/// `"<base64>"`: base64 has no character JSON escapes.
fn b64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let start = out.len();
    out.resize(
        start + base64::encoded_len(bytes.len(), true).unwrap_or(0),
        0,
    );
    // The buffer was sized for exactly this encoding.
    let written = STANDARD.encode_slice(bytes, &mut out[start..]).unwrap_or(0);
    out.truncate(start + written);
    out.push(b'"');
}

fn opt_b64(out: &mut Vec<u8>, bytes: Option<&Vec<u8>>) {
    match bytes {
        Some(b) => b64(out, b),
        None => out.extend_from_slice(b"null"),
    }
}

/// Both forms of one [`SignedMeta`]; the certificates' hashes go to `certs`.
fn meta(
    canonical: &mut Vec<u8>,
    stored: &mut Option<(Vec<u8>, Vec<CertRow>, &CertHashes)>,
    m: &SignedMeta,
) -> Result<(), serde_json::Error> {
    let mut common = Vec::with_capacity(64 + m.base.len() + m.signature_input.len());
    common.extend_from_slice(b"{\"signature_input\":");
    json(&mut common, &m.signature_input)?;
    common.extend_from_slice(b",\"signature\":");
    json(&mut common, &m.signature)?;
    common.extend_from_slice(b",\"content_digest\":");
    json(&mut common, &m.content_digest)?;
    common.extend_from_slice(b",\"base\":");
    json(&mut common, &m.base)?;
    canonical.extend_from_slice(&common);
    canonical.extend_from_slice(b",\"signer_cert_der\":");
    b64(canonical, &m.signer_cert_der);
    canonical.extend_from_slice(b",\"chain_der\":[");
    for (i, der) in m.chain_der.iter().enumerate() {
        if i > 0 {
            canonical.push(b',');
        }
        b64(canonical, der);
    }
    canonical.extend_from_slice(b"]}");

    if let Some((stored, certs, known)) = stored {
        let mut hashed = |der: &Vec<u8>, stored: &mut Vec<u8>| {
            let h = known.hex_of(der);
            stored.push(b'"');
            stored.extend_from_slice(h.as_bytes());
            stored.push(b'"');
            certs.push((h, der.clone()));
        };
        stored.extend_from_slice(&common);
        stored.extend_from_slice(b",\"signer_cert_sha256\":");
        hashed(&m.signer_cert_der, stored);
        stored.extend_from_slice(b",\"chain_sha256\":[");
        for (i, der) in m.chain_der.iter().enumerate() {
            if i > 0 {
                stored.push(b',');
            }
            hashed(der, stored);
        }
        stored.extend_from_slice(b"]}");
    }
    Ok(())
}

fn bodies(out: &mut Vec<u8>, b: Option<&Bodies>) {
    match b {
        None => out.extend_from_slice(b"null"),
        Some(b) => {
            out.extend_from_slice(b"{\"request\":");
            opt_b64(out, b.request.as_ref());
            out.extend_from_slice(b",\"response\":");
            opt_b64(out, b.response.as_ref());
            out.push(b'}');
        }
    }
}

fn push_both(
    canonical: &mut Vec<u8>,
    stored: &mut Option<(Vec<u8>, Vec<CertRow>, &CertHashes)>,
    piece: &[u8],
) {
    canonical.extend_from_slice(piece);
    if let Some((s, _, _)) = stored {
        s.extend_from_slice(piece);
    }
}

/// Encodes `e` in its canonical form and, when given the certificate
/// hashes to use, its stored form.
pub(crate) fn encode_exchange(
    e: &Exchange,
    stored_with: Option<&CertHashes>,
) -> Result<EncodedExchange, serde_json::Error> {
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(b"{\"transaction_id\":");
    json(&mut head, &e.transaction_id)?;
    head.extend_from_slice(b",\"client\":");
    json(&mut head, &e.client)?;
    head.extend_from_slice(b",\"service\":");
    json(&mut head, &e.service)?;
    head.extend_from_slice(b",\"role\":");
    json(&mut head, &e.role)?;
    head.extend_from_slice(b",\"received_at\":");
    json(&mut head, &e.received_at)?;
    head.extend_from_slice(b",\"forwarded_at\":");
    json(&mut head, &e.forwarded_at)?;
    head.extend_from_slice(b",\"backend_answered_at\":");
    json(&mut head, &e.backend_answered_at)?;
    head.extend_from_slice(b",\"responded_at\":");
    json(&mut head, &e.responded_at)?;
    head.extend_from_slice(b",\"status\":");
    json(&mut head, &e.status)?;
    head.extend_from_slice(b",\"problem_code\":");
    json(&mut head, &e.problem_code)?;
    head.extend_from_slice(b",\"request_bytes\":");
    json(&mut head, &e.request_bytes)?;
    head.extend_from_slice(b",\"response_bytes\":");
    json(&mut head, &e.response_bytes)?;
    head.extend_from_slice(b",\"user_id\":");
    json(&mut head, &e.user_id)?;
    head.extend_from_slice(b",\"request_id\":");
    json(&mut head, &e.request_id)?;
    head.extend_from_slice(b",\"request\":");

    let cert_bytes: usize = std::iter::once(&e.request)
        .chain(e.response.as_ref())
        .flat_map(|m| std::iter::once(&m.signer_cert_der).chain(&m.chain_der))
        .map(|d| d.len() * 4 / 3 + 4)
        .sum();
    let mut canonical = Vec::with_capacity(head.len() + cert_bytes + 2048);
    canonical.extend_from_slice(&head);
    let mut stored = stored_with.map(|known| (head, Vec::with_capacity(4), known));
    meta(&mut canonical, &mut stored, &e.request)?;
    push_both(&mut canonical, &mut stored, b",\"response\":");
    match &e.response {
        Some(m) => meta(&mut canonical, &mut stored, m)?,
        None => push_both(&mut canonical, &mut stored, b"null"),
    }
    let mut tail = Vec::with_capacity(16);
    tail.extend_from_slice(b",\"body\":");
    bodies(&mut tail, e.body.as_ref());
    if let Some(t) = &e.trace_id {
        tail.extend_from_slice(b",\"trace_id\":\"");
        tail.extend_from_slice(t.to_string().as_bytes());
        tail.push(b'"');
    }
    tail.push(b'}');
    canonical.extend_from_slice(&tail);
    let (stored, certs) = match stored {
        Some((mut s, certs, _)) => {
            s.extend_from_slice(&tail);
            (s, certs)
        }
        None => (Vec::new(), Vec::new()),
    };
    Ok(EncodedExchange {
        canonical,
        stored,
        certs,
    })
}

/// `{"seq":N,"writer":"...","prev_hash":"<hex>","exchange":` — the part of
/// a record before its exchange.
pub(crate) fn record_head(
    seq: u64,
    writer: &str,
    prev_hash: &ChainHash,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(160 + writer.len());
    out.extend_from_slice(b"{\"seq\":");
    json(&mut out, &seq)?;
    out.extend_from_slice(b",\"writer\":");
    json(&mut out, writer)?;
    out.extend_from_slice(b",\"prev_hash\":\"");
    push_hex(&mut out, &prev_hash.0);
    out.extend_from_slice(b"\",\"exchange\":");
    Ok(out)
}

/// The record hash: SHA-256 over `head`, the canonical exchange and `}`.
pub(crate) fn record_hash(head: &[u8], canonical_exchange: &[u8]) -> ChainHash {
    let mut h = Sha256::new();
    h.update(head);
    h.update(canonical_exchange);
    h.update(b"}");
    ChainHash(h.finish())
}

/// The stored text of a record: `head`, the stored exchange, then
/// `,"hash":"<hex>"}`.
pub(crate) fn stored_text(
    head: &[u8],
    stored_exchange: &[u8],
    hash: &ChainHash,
) -> Result<String, serde_json::Error> {
    let mut out = Vec::with_capacity(head.len() + stored_exchange.len() + 80);
    out.extend_from_slice(head);
    out.extend_from_slice(stored_exchange);
    out.extend_from_slice(b",\"hash\":\"");
    push_hex(&mut out, &hash.0);
    out.extend_from_slice(b"\"}");
    String::from_utf8(out).map_err(serde::ser::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::super::{LogRecord, Role};
    use super::*;
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        // Quotes, backslashes, control characters and non-ASCII: everything
        // JSON escapes or passes raw.
        proptest::string::string_regex("[a-z\"\\\\\n\t\u{1}\u{7f}é😀 =:;()@-]{0,40}").unwrap()
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..70)
    }

    fn meta() -> impl Strategy<Value = SignedMeta> {
        (
            text(),
            text(),
            text(),
            text(),
            bytes(),
            proptest::collection::vec(bytes(), 0..3),
        )
            .prop_map(|(si, sig, cd, base, cert, chain)| SignedMeta {
                signature_input: si,
                signature: sig,
                content_digest: cd,
                base,
                signer_cert_der: cert,
                chain_der: chain,
            })
    }

    fn exchange() -> impl Strategy<Value = Exchange> {
        let times = (0i64..4_000_000_000, 0u32..1_000_000_000, any::<bool>());
        (
            (times, any::<u16>(), proptest::option::of(text())),
            (any::<u64>(), any::<u64>()),
            (proptest::option::of(text()), proptest::option::of(text())),
            (meta(), proptest::option::of(meta())),
            proptest::option::of((proptest::option::of(bytes()), proptest::option::of(bytes()))),
            (0usize..3, proptest::option::of(any::<[u8; 16]>())),
        )
            .prop_map(
                |(
                    ((secs, nanos, fwd), status, problem),
                    (rq, rs),
                    (user, reqid),
                    (request, response),
                    body,
                    (role, trace),
                )| {
                    let at = Utc.timestamp_opt(secs, nanos).single().unwrap_or_default();
                    Exchange {
                        transaction_id: ndxp_core::TransactionId::new(),
                        client: "VN/GOV/000.00.00.G22/QLHT".parse().unwrap(),
                        service: "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1".parse().unwrap(),
                        role: [Role::Consumer, Role::Provider, Role::Gateway][role],
                        received_at: at,
                        forwarded_at: fwd.then_some(at),
                        backend_answered_at: None,
                        responded_at: at,
                        status,
                        problem_code: problem,
                        request_bytes: rq,
                        response_bytes: rs,
                        user_id: user,
                        request_id: reqid,
                        request,
                        response,
                        body: body.map(|(request, response)| Bodies { request, response }),
                        trace_id: trace.and_then(ndxp_core::trace::TraceId::from_bytes),
                    }
                },
            )
    }

    proptest! {
        /// The hand-written encoder writes exactly `serde_json`'s bytes,
        /// which define the canonical encoding.
        #[test]
        fn matches_serde_json(e in exchange(), seq in any::<u64>(), writer in text(), prev in any::<[u8; 32]>()) {
            let record = LogRecord::new(seq, writer, ChainHash(prev), e).unwrap();
            let reference = serde_json::to_vec(&record).unwrap();
            let (again, text) = LogRecord::new_canonical(
                record.seq, record.writer.clone(), record.prev_hash, record.exchange.clone(),
            ).unwrap();
            prop_assert_eq!(text.as_bytes(), reference.as_slice());
            prop_assert_eq!(again.hash, record.hash);
            // The hash covers the encoding without its `hash` member.
            let cut = reference.len() - ",\"hash\":\"\"}".len() - 64;
            let mut hashed = reference[..cut].to_vec();
            hashed.push(b'}');
            prop_assert_eq!(ChainHash(sha256(&hashed)), record.hash);
            // The stored form is the same JSON with certificates by hash.
            let encoded = encode_exchange(&record.exchange, Some(&CertHashes::default())).unwrap();
            let head = record_head(record.seq, &record.writer, &record.prev_hash).unwrap();
            let stored: serde_json::Value = serde_json::from_str(
                &stored_text(&head, &encoded.stored, &record.hash).unwrap(),
            ).unwrap();
            let mut expected: serde_json::Value = serde_json::from_slice(&reference).unwrap();
            for key in ["request", "response"] {
                if let Some(m) = expected["exchange"][key].as_object_mut() {
                    let hash_of = |v: &serde_json::Value| {
                        let der = STANDARD.decode(v.as_str().unwrap()).unwrap();
                        serde_json::Value::from(hex_string(&sha256(&der)))
                    };
                    let signer = m.remove("signer_cert_der").unwrap();
                    m.insert("signer_cert_sha256".into(), hash_of(&signer));
                    let chain = m.remove("chain_der").unwrap();
                    let hashes: Vec<_> = chain.as_array().unwrap().iter().map(hash_of).collect();
                    m.insert("chain_sha256".into(), hashes.into());
                }
            }
            prop_assert_eq!(stored, expected);
        }
    }

    #[test]
    fn remembered_certificate_hashes_are_their_sha256() {
        let known = CertHashes::default();
        for round in 0..2 {
            for i in 0..(CertHashes::KEEP + 4) {
                let der = vec![u8::try_from(i).unwrap(); 100 + i];
                assert_eq!(
                    known.hex_of(&der),
                    hex_string(&sha256(&der)),
                    "round {round}"
                );
            }
        }
        assert_eq!(known.0.lock().unwrap().len(), CertHashes::KEEP);
    }

    /// A record written before `trace_id` existed (no such member) reads
    /// back and verifies; with a trace id the member is covered by the
    /// hash.
    #[test]
    fn trace_id_is_optional_and_hashed() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let mut e =
            proptest::strategy::ValueTree::current(&exchange().new_tree(&mut runner).unwrap());
        e.trace_id = None;
        let old = LogRecord::new(7, "node-a/1".into(), ChainHash::GENESIS, e.clone()).unwrap();
        let text = String::from_utf8(old.to_canonical().unwrap()).unwrap();
        assert!(!text.contains("trace_id"));
        let back: LogRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back.compute_hash().unwrap(), old.hash);

        e.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap());
        let new = LogRecord::new(7, "node-a/1".into(), ChainHash::GENESIS, e).unwrap();
        assert_ne!(new.hash, old.hash);
        let text = String::from_utf8(new.to_canonical().unwrap()).unwrap();
        assert!(text.ends_with(&format!(
            ",\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\"}},\"hash\":\"{}\"}}",
            new.hash
        )));
        // Changing the trace id breaks the hash.
        let forged = text.replace("4bf92f35", "4bf92f36");
        let forged: LogRecord = serde_json::from_str(&forged).unwrap();
        assert_ne!(forged.compute_hash().unwrap(), forged.hash);
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex_string(&[0x00, 0xab, 0x9f]), "00ab9f");
        let mut v = b"x".to_vec();
        push_hex(&mut v, &[0xff, 0x01]);
        assert_eq!(v, b"xff01");
    }
}
