//! Member admission from the node's side (`ndxp-node register`): build a
//! registration request signed with the member's signing key, carrying the
//! node's authentication certificate, and send it to the management API,
//! where the operator approves or rejects it.
//!
//! Before anything is sent, the key material in `node.keys_dir` is checked
//! the way the management side will check it, so that a wrong file is named
//! here rather than refused there: `sign.pem` must be a signing certificate
//! of `node.member` whose key is `sign.key`; `auth.pem` must be an
//! authentication certificate of `node.member` / `node.name` whose key is
//! `auth.key`; neither may have expired.
//!
//! The request: `POST {management.url}/api/v1/registrations`, body the
//! compact JWS (`Content-Type: application/jose`); the answer is `201
//! Created` with `{"id": …, "state": "pending", …}` or an RFC 9457
//! `application/problem+json` document.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ndxp_core::{MemberId, NodeName, Problem};
use ndxp_registry::registration::{sign_registration, RegistrationError, RegistrationPayload};
use ndxp_sign::cert::{self, CertError};
use ndxp_sign::key::{self, KeyError};
use ndxp_sign::openssl::pkey::{HasPublic, PKey, PKeyRef, Private};
use ndxp_sign::openssl::x509::X509;
use serde::{Deserialize, Serialize};

use crate::config::NodeConfig;
use crate::http::{describe_send_error, platform_client, HttpSetupError};

/// Media type of the request body.
pub const REQUEST_MEDIA_TYPE: &str = "application/jose";

/// Largest answer read from the management API, in bytes.
const MAX_ANSWER_LEN: usize = 64 * 1024;

/// A signed registration request, ready to send.
#[derive(Debug, Clone)]
pub struct SignedRegistration {
    /// The compact JWS.
    pub jws: String,
    /// What it asks for.
    pub payload: RegistrationPayload,
    /// SHA-256 fingerprint of the authentication certificate (lowercase
    /// hex), as it will appear in the global configuration.
    pub auth_cert_sha256: String,
}

/// What the management API answered to an accepted request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrationReceipt {
    /// The request's identifier at the management side (for `ndxp-gateway
    /// requests approve --config FILE --id ID`).
    pub id: String,
    /// Its state, `pending` for a new request.
    pub state: String,
    /// Where it was sent.
    pub url: String,
    /// The member.
    pub member: MemberId,
    /// The node.
    pub node: NodeName,
    /// The node's peer address as registered.
    pub address: String,
    /// Fingerprint of the authentication certificate registered.
    pub auth_cert_sha256: String,
}

/// Why a registration failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdmissionError {
    /// `node.passphrase_file` could not be read.
    #[error("node.passphrase_file: cannot read the passphrase")]
    Passphrase(#[source] KeyError),
    /// A private key could not be read (missing, permissions, passphrase).
    #[error("cannot read the private key {path}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: KeyError,
    },
    /// A certificate the platform operator issues is not installed yet.
    #[error("{path} does not exist: have the platform operator issue it from {csr} (`ndxp-gateway pki issue --csr {csr} --profile {profile} {identity} --out {path}`) and install it")]
    MissingCertificate {
        /// The missing file.
        path: PathBuf,
        /// The CSR it is issued from.
        csr: PathBuf,
        /// The certificate profile.
        profile: &'static str,
        /// The identity arguments of `pki issue` (`--member M`, and
        /// `--node N` for a node certificate).
        identity: String,
    },
    /// A certificate file could not be read or parsed.
    #[error("cannot read the certificate file {path}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<CertificateReadError>,
    },
    /// A certificate does not belong to this node, does not match its key,
    /// or has expired.
    #[error("{path}: {reason}")]
    Mismatch {
        /// The certificate file.
        path: PathBuf,
        /// What does not match, and how to fix it.
        reason: String,
    },
    /// Building or signing the request failed.
    #[error("cannot sign the registration request")]
    Sign(#[source] RegistrationError),
    /// The PKCS#11 token of the signing key (`[node.sign_pkcs11]`) cannot
    /// be used.
    #[error("node.sign_pkcs11: {0}")]
    Token(String),
    /// The HTTP client could not be set up.
    #[error(transparent)]
    Http(#[from] HttpSetupError),
    /// The request did not reach the management API or got no answer.
    #[error("{explanation} (POST {url})")]
    Unreachable {
        /// The URL.
        url: String,
        /// What happened, in words.
        explanation: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The management API refused the request with a problem document.
    #[error("the management server refused the registration: {}: {}", problem.code, problem.detail.as_deref().unwrap_or(&problem.title))]
    Refused {
        /// The problem document.
        problem: Problem,
    },
    /// The management API answered something that is neither a receipt nor
    /// a problem document.
    #[error("unexpected answer from {url}: HTTP {status}: {body}")]
    UnexpectedAnswer {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The beginning of the body.
        body: String,
    },
}

/// Why a certificate file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateReadError {
    /// The file could not be read.
    #[error("reading failed")]
    Io(#[source] std::io::Error),
    /// The PEM did not parse.
    #[error("it is not a PEM certificate file")]
    Parse(#[source] CertError),
    /// The file holds no certificate.
    #[error("it holds no certificate")]
    Empty,
}

/// Reads a PEM file of one or more certificates.
pub(crate) fn read_certs(path: &Path) -> Result<Vec<X509>, CertificateReadError> {
    let pem = std::fs::read(path).map_err(CertificateReadError::Io)?;
    let certs = cert::read_pem_chain(&pem).map_err(CertificateReadError::Parse)?;
    if certs.is_empty() {
        return Err(CertificateReadError::Empty);
    }
    Ok(certs)
}

fn read_issued(
    path: &Path,
    csr: PathBuf,
    profile: &'static str,
    identity: String,
) -> Result<Vec<X509>, AdmissionError> {
    if !path.exists() {
        return Err(AdmissionError::MissingCertificate {
            path: path.to_path_buf(),
            csr,
            profile,
            identity,
        });
    }
    read_certs(path).map_err(|source| AdmissionError::Certificate {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

fn read_key(path: &Path, pass: Option<&[u8]>) -> Result<PKey<Private>, AdmissionError> {
    key::read_private_key_file(path, pass).map_err(|source| AdmissionError::Key {
        path: path.to_path_buf(),
        source,
    })
}

/// Checks that `cert` is valid at `now` and carries `key`'s public key.
fn check_cert_key<T: HasPublic>(
    path: &Path,
    cert: &X509,
    key: &PKeyRef<T>,
    key_path: &Path,
    now: DateTime<Utc>,
) -> Result<(), AdmissionError> {
    let mismatch = |reason: String| AdmissionError::Mismatch {
        path: path.to_path_buf(),
        reason,
    };
    let same_key = cert
        .public_key()
        .map(|pk| pk.public_eq(key))
        .unwrap_or(false);
    if !same_key {
        return Err(mismatch(format!(
            "the certificate is not for the key in {}; install the certificate issued from this directory's CSR",
            key_path.display()
        )));
    }
    let not_before = cert::asn1_to_utc(cert.not_before());
    let not_after = cert::asn1_to_utc(cert.not_after());
    if let Ok(t) = not_after {
        if t <= now {
            return Err(mismatch(format!(
                "the certificate expired at {t}; have it issued again"
            )));
        }
    }
    if let Ok(t) = not_before {
        if t > now {
            return Err(mismatch(format!(
                "the certificate is valid only from {t}; check this computer's clock"
            )));
        }
    }
    Ok(())
}

/// Reads the key material named by `config`, checks it (see the module
/// documentation) and signs a registration request made at `now`.
///
/// # Errors
/// [`AdmissionError`] naming the file at fault.
pub fn build_registration(
    config: &NodeConfig,
    now: DateTime<Utc>,
) -> Result<SignedRegistration, AdmissionError> {
    let pass = config
        .node
        .passphrase_file
        .as_deref()
        .map(key::read_passphrase_file)
        .transpose()
        .map_err(AdmissionError::Passphrase)?;
    let pass = pass.as_deref();
    let keys = &config.node.keys_dir;

    // The member's signing certificate and its chain.
    let sign_path = config.sign_cert_path();
    let mut sign_chain = read_issued(
        &sign_path,
        keys.join("sign.csr"),
        "sign",
        format!("--member {}", config.node.member),
    )?;
    let chain_path = config.chain_path();
    if chain_path.exists() {
        let extra = read_certs(&chain_path).map_err(|source| AdmissionError::Certificate {
            path: chain_path.clone(),
            source: Box::new(source),
        })?;
        sign_chain.extend(extra);
    }
    let sign_key = match config.sign_token() {
        None => SignKey::File(read_key(&config.sign_key_path(), pass)?),
        Some(token) => {
            let token = token.map_err(AdmissionError::Token)?;
            let store = ndxp_sign::pkcs11::Pkcs11KeyStore::open(&token)
                .and_then(|s| s.find_key().map(|_| s))
                .map_err(|e| AdmissionError::Token(ndxp_core::ErrorChain(&e).to_string()))?;
            SignKey::Token(Box::new(store))
        }
    };
    let sign_leaf = sign_chain
        .first()
        .ok_or_else(|| AdmissionError::Certificate {
            path: sign_path.clone(),
            source: Box::new(CertificateReadError::Empty),
        })?;
    match &sign_key {
        SignKey::File(k) => check_cert_key(&sign_path, sign_leaf, k, &config.sign_key_path(), now)?,
        SignKey::Token(store) => {
            let public = ndxp_sign::key::KeyStore::public_key(&**store, store.key_name())
                .map_err(|e| AdmissionError::Token(ndxp_core::ErrorChain(&e).to_string()))?;
            let where_ = PathBuf::from(format!(
                "key {} on PKCS#11 token {}",
                store.key_name(),
                store.token_label()
            ));
            check_cert_key(&sign_path, sign_leaf, &public, &where_, now)?;
        }
    }
    match cert::member_of(sign_leaf) {
        Ok(m) if m == config.node.member => {}
        Ok(m) => {
            return Err(AdmissionError::Mismatch {
                path: sign_path,
                reason: format!(
                    "it is the signing certificate of {m}, but node.member is {}",
                    config.node.member
                ),
            })
        }
        Err(e) => {
            return Err(AdmissionError::Mismatch {
                path: sign_path,
                reason: format!("it is not a member signing certificate (profile sign): {e}"),
            })
        }
    }

    // The node's authentication certificate.
    let auth_path = config.auth_cert_path();
    let auth_certs = read_issued(
        &auth_path,
        keys.join("auth.csr"),
        "auth",
        format!(
            "--member {} --node {}",
            config.node.member, config.node.name
        ),
    )?;
    let auth_leaf = auth_certs
        .first()
        .ok_or_else(|| AdmissionError::Certificate {
            path: auth_path.clone(),
            source: Box::new(CertificateReadError::Empty),
        })?;
    let auth_key = read_key(&config.auth_key_path(), pass)?;
    check_cert_key(
        &auth_path,
        auth_leaf,
        &auth_key,
        &config.auth_key_path(),
        now,
    )?;
    match cert::node_of(auth_leaf) {
        Ok((m, n)) if m == config.node.member && n == config.node.name => {}
        Ok((m, n)) => {
            return Err(AdmissionError::Mismatch {
                path: auth_path,
                reason: format!(
                    "it is the authentication certificate of node {n} of {m}, but the configuration names node {} of {}",
                    config.node.name, config.node.member
                ),
            })
        }
        Err(e) => {
            return Err(AdmissionError::Mismatch {
                path: auth_path,
                reason: format!("it is not a node authentication certificate (profile auth): {e}"),
            })
        }
    }
    let auth_cert_sha256 =
        cert::try_fingerprint_sha256(auth_leaf).map_err(|e| AdmissionError::Certificate {
            path: auth_path.clone(),
            source: Box::new(CertificateReadError::Parse(e)),
        })?;
    let auth_pem = cert::write_pem_chain(&auth_certs).map_err(|e| AdmissionError::Certificate {
        path: auth_path.clone(),
        source: Box::new(CertificateReadError::Parse(e)),
    })?;

    let payload = RegistrationPayload::new(
        config.node.member.clone(),
        config.node.name.clone(),
        config.node.address.clone(),
        String::from_utf8_lossy(&auth_pem).into_owned(),
        now,
    );
    let jws = match &sign_key {
        SignKey::File(k) => sign_registration(&payload, k, &sign_chain),
        SignKey::Token(store) => sign_registration_on_token(&payload, store, &sign_chain),
    }
    .map_err(AdmissionError::Sign)?;
    Ok(SignedRegistration {
        jws,
        payload,
        auth_cert_sha256,
    })
}

#[derive(Deserialize)]
struct Answer {
    id: String,
    state: String,
}

/// Sends a signed request to the management API.
///
/// # Errors
/// [`AdmissionError::Unreachable`] (no connection, no answer in time),
/// [`AdmissionError::Refused`] (a problem document),
/// [`AdmissionError::UnexpectedAnswer`], [`AdmissionError::Http`].
pub async fn submit(
    config: &NodeConfig,
    request: &SignedRegistration,
) -> Result<RegistrationReceipt, AdmissionError> {
    let url = config.registrations_url();
    let client = platform_client(config)?;
    let timeout = Duration::from_secs(config.management.timeout_secs);
    let unreachable = |source: reqwest::Error| AdmissionError::Unreachable {
        url: url.clone(),
        explanation: describe_send_error(&source, "the management server", timeout),
        source,
    };
    let mut resp = client
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, REQUEST_MEDIA_TYPE)
        .header(
            reqwest::header::ACCEPT,
            "application/json, application/problem+json",
        )
        .body(request.jws.clone())
        .send()
        .await
        .map_err(unreachable)?;
    let status = resp.status();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
        let room = MAX_ANSWER_LEN.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    let unexpected = |body: &[u8]| AdmissionError::UnexpectedAnswer {
        url: url.clone(),
        status: status.as_u16(),
        body: excerpt(body),
    };
    if status.is_success() {
        let answer: Answer = serde_json::from_slice(&body).map_err(|_| unexpected(&body))?;
        return Ok(RegistrationReceipt {
            id: answer.id,
            state: answer.state,
            url,
            member: request.payload.member.clone(),
            node: request.payload.node.clone(),
            address: request.payload.address.clone(),
            auth_cert_sha256: request.auth_cert_sha256.clone(),
        });
    }
    match serde_json::from_slice::<Problem>(&body) {
        Ok(problem) => Err(AdmissionError::Refused { problem }),
        Err(_) => Err(unexpected(&body)),
    }
}

/// At most 300 characters of a body, on one line.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut s: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    if text.chars().count() > 300 {
        s.push('…');
    }
    if s.trim().is_empty() {
        s = "(empty body)".into();
    }
    s
}

/// Builds, signs and sends the registration request of the node that
/// `config` describes ([`build_registration`] then [`submit`]).
///
/// # Errors
/// Those of [`build_registration`] and [`submit`].
pub async fn register(
    config: &NodeConfig,
    now: DateTime<Utc>,
) -> Result<RegistrationReceipt, AdmissionError> {
    let request = build_registration(config, now)?;
    submit(config, &request).await
}

/// The member signing key: a file, or a key on a PKCS#11 token.
enum SignKey {
    File(PKey<Private>),
    Token(Box<ndxp_sign::pkcs11::Pkcs11KeyStore>),
}

/// [`sign_registration`] with the key on the token: the same JWS (ES256
/// for an EC key, PS256 for RSA, the signing chain in `x5c`).
fn sign_registration_on_token(
    payload: &RegistrationPayload,
    store: &ndxp_sign::pkcs11::Pkcs11KeyStore,
    sign_chain: &[X509],
) -> Result<String, RegistrationError> {
    use ndxp_sign::jws::{self, JwsAlgorithm};
    use ndxp_sign::key::KeyStore as _;
    let body =
        serde_json::to_vec(payload).map_err(|e| RegistrationError::Malformed(e.to_string()))?;
    let public = store
        .public_key(store.key_name())
        .map_err(|e| RegistrationError::Sign(jws::JwsError::KeyStore(e)))?;
    let alg = if public.id() == ndxp_sign::openssl::pkey::Id::EC {
        JwsAlgorithm::Es256
    } else {
        JwsAlgorithm::Ps256
    };
    jws::sign_with_store(
        &body,
        store,
        store.key_name(),
        alg,
        sign_chain,
        Some(ndxp_registry::registration::REGISTRATION_TYP),
    )
    .map_err(RegistrationError::Sign)
}
