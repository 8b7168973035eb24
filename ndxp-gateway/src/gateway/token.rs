//! Consumer credentials and access tokens.
//!
//! - **Client secrets** are 32 random bytes, base64url, prefixed
//!   [`SECRET_PREFIX`]. Only a keyed hash is stored:
//!   `hmac-sha256$<salt, base64>$<hash, base64>` (HMAC-SHA256 of the secret
//!   keyed with a 16-byte random salt), compared in constant time. A secret
//!   with 256 bits of entropy cannot be guessed, so password stretching
//!   would only make each check expensive, and expensive checks are what a
//!   flood of token requests exploits (`docs/gateway.md`). Hashes stored by
//!   earlier versions, `pbkdf2-sha256$<iterations>$<salt>$<hash>`
//!   (PBKDF2-HMAC-SHA256), keep verifying; [`check_is_costly`] tells them
//!   apart so the token endpoint can run them off the async threads.
//! - **Access tokens** are JWTs (RFC 7519) signed with ES256 (JWS, RFC 7515)
//!   by the platform's signing key (`[globalconf] signing_key`), header
//!   `{"alg":"ES256","typ":"at+jwt"}`, claims `iss`, `sub` (the client id),
//!   `aud` (= `iss`), `iat`, `exp`, `jti` (UUID v7) and `gen` (the
//!   credentials' generation, so a rotation ends older tokens at once).
//! - [`TokenVerifier`] verifies a token's signature once and remembers it
//!   until it expires: the request path does one hash-map lookup per call.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ndxp_sign::jws::{self, JwsAlgorithm, VerifyOptions};
use ndxp_sign::openssl::hash::MessageDigest;
use ndxp_sign::openssl::pkey::{PKey, Private, Public};
use serde::{Deserialize, Serialize};

/// Prefix of client secrets.
pub const SECRET_PREFIX: &str = "ndxps_";
/// Prefix of client ids.
pub const CLIENT_ID_PREFIX: &str = "ndxpc_";
/// PBKDF2 iterations that earlier versions used for secret hashes (OWASP
/// 2023 guidance for PBKDF2-HMAC-SHA256); such stored hashes still verify.
pub const PBKDF2_ITERATIONS: u32 = 600_000;
/// Scheme tag of the stored form of new secrets.
const HMAC_SCHEME: &str = "hmac-sha256";
/// Scheme tag of the stored form earlier versions wrote.
const PBKDF2_SCHEME: &str = "pbkdf2-sha256";
/// Longest secret checked; longer ones never match (ours are 49 bytes).
const MAX_SECRET_BYTES: usize = 1024;
/// Fewest iterations a stored hash may use.
const MIN_ITERATIONS: u32 = 1_000;
/// Most iterations a stored hash may ask for (bounds the work of a check).
const MAX_ITERATIONS: u32 = 10_000_000;
/// Longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Most verified tokens remembered at once.
pub const MAX_CACHED_TOKENS: usize = 100_000;

/// Why a credential operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// OpenSSL failed (random numbers, PBKDF2).
    #[error("cryptographic operation failed")]
    Crypto(#[source] ndxp_sign::openssl::error::ErrorStack),
    /// The token could not be signed.
    #[error("cannot sign the access token")]
    Sign(#[source] jws::JwsError),
    /// The claims could not be encoded.
    #[error("cannot encode the token claims")]
    Encode(#[source] serde_json::Error),
    /// The token is malformed, badly signed, for another audience or
    /// expired; the message says which, for the client.
    #[error("{0}")]
    Invalid(&'static str),
}

fn random(n: usize) -> Result<Vec<u8>, TokenError> {
    let mut bytes = vec![0u8; n];
    ndxp_sign::openssl::rand::rand_bytes(&mut bytes).map_err(TokenError::Crypto)?;
    Ok(bytes)
}

/// A new client id: [`CLIENT_ID_PREFIX`] and 16 random bytes, hex.
///
/// # Errors
/// When the random generator fails.
pub fn generate_client_id() -> Result<String, TokenError> {
    Ok(format!("{CLIENT_ID_PREFIX}{}", hex::encode(random(16)?)))
}

/// A new client secret: [`SECRET_PREFIX`] and 32 random bytes, base64url.
///
/// # Errors
/// When the random generator fails.
pub fn generate_secret() -> Result<String, TokenError> {
    Ok(format!(
        "{SECRET_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(random(32)?)
    ))
}

fn pbkdf2(secret: &str, salt: &[u8], iterations: u32) -> Result<[u8; 32], TokenError> {
    let mut out = [0u8; 32];
    ndxp_sign::openssl::pkcs5::pbkdf2_hmac(
        secret.as_bytes(),
        salt,
        usize::try_from(iterations).unwrap_or(usize::MAX),
        MessageDigest::sha256(),
        &mut out,
    )
    .map_err(TokenError::Crypto)?;
    Ok(out)
}

fn hmac_sha256(key: &[u8], secret: &str) -> Result<Vec<u8>, TokenError> {
    let key = PKey::hmac(key).map_err(TokenError::Crypto)?;
    let mut signer = ndxp_sign::openssl::sign::Signer::new(MessageDigest::sha256(), &key)
        .map_err(TokenError::Crypto)?;
    signer
        .update(secret.as_bytes())
        .map_err(TokenError::Crypto)?;
    signer.sign_to_vec().map_err(TokenError::Crypto)
}

/// The stored form of a secret in the PBKDF2 scheme of earlier versions,
/// with a fresh salt and `iterations` (kept for tests and migrations; new
/// secrets use [`hash_secret`]).
///
/// # Errors
/// When OpenSSL fails.
pub fn hash_secret_with(secret: &str, iterations: u32) -> Result<String, TokenError> {
    let salt = random(16)?;
    let hash = pbkdf2(secret, &salt, iterations)?;
    Ok(format!(
        "{PBKDF2_SCHEME}${iterations}${}${}",
        STANDARD.encode(&salt),
        STANDARD.encode(hash)
    ))
}

/// The stored form of a secret: `hmac-sha256$<salt>$<hash>` with a fresh
/// 16-byte salt.
///
/// # Errors
/// When OpenSSL fails.
pub fn hash_secret(secret: &str) -> Result<String, TokenError> {
    let salt = random(16)?;
    let hash = hmac_sha256(&salt, secret)?;
    Ok(format!(
        "{HMAC_SCHEME}${}${}",
        STANDARD.encode(&salt),
        STANDARD.encode(hash)
    ))
}

/// Whether checking a secret against `stored` takes real work (a PBKDF2
/// hash of an earlier version) rather than one HMAC.
pub fn check_is_costly(stored: &str) -> bool {
    stored.starts_with(PBKDF2_SCHEME)
}

/// Whether `secret` matches `stored` (made by [`hash_secret`], or by
/// [`hash_secret_with`] in the scheme of earlier versions). A stored value
/// that cannot be parsed never matches.
pub fn verify_secret(secret: &str, stored: &str) -> bool {
    if secret.len() > MAX_SECRET_BYTES {
        return false;
    }
    if let Some(rest) = stored
        .strip_prefix(HMAC_SCHEME)
        .and_then(|r| r.strip_prefix('$'))
    {
        let Some((salt, hash)) = rest.split_once('$') else {
            return false;
        };
        let (Ok(salt), Ok(want)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
            return false;
        };
        return match hmac_sha256(&salt, secret) {
            Ok(got) => want.len() == got.len() && ndxp_sign::openssl::memcmp::eq(&got, &want),
            Err(_) => false,
        };
    }
    let mut parts = stored.split('$');
    let (Some(PBKDF2_SCHEME), Some(iter), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let Ok(iterations) = iter.parse::<u32>() else {
        return false;
    };
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        return false;
    }
    let (Ok(salt), Ok(want)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
        return false;
    };
    match pbkdf2(secret, &salt, iterations) {
        Ok(got) => want.len() == got.len() && ndxp_sign::openssl::memcmp::eq(&got, &want),
        Err(_) => false,
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: the client id.
    pub sub: String,
    /// Audience: the gateway (same as `iss`).
    pub aud: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Token id (UUID v7).
    pub jti: String,
    /// The credentials' generation when the token was issued.
    pub gen: i64,
}

/// Signs access tokens.
pub struct TokenIssuer {
    key: PKey<Private>,
    issuer: String,
    lifetime_secs: i64,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.issuer)
            .field("lifetime_secs", &self.lifetime_secs)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// An issuer with an EC P-256 key.
    pub fn new(key: PKey<Private>, issuer: String, lifetime_secs: u64) -> Self {
        Self {
            key,
            issuer,
            lifetime_secs: i64::try_from(lifetime_secs).unwrap_or(86_400),
        }
    }

    /// The token lifetime in seconds.
    pub fn lifetime_secs(&self) -> i64 {
        self.lifetime_secs
    }

    /// Issues a token for `client_id` of `generation` at `now` (Unix
    /// seconds).
    ///
    /// # Errors
    /// When the key is not a P-256 key or signing fails.
    pub fn issue(&self, client_id: &str, generation: i64, now: i64) -> Result<String, TokenError> {
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: client_id.to_string(),
            aud: self.issuer.clone(),
            iat: now,
            exp: now.saturating_add(self.lifetime_secs),
            jti: uuid::Uuid::now_v7().to_string(),
            gen: generation,
        };
        let payload = serde_json::to_vec(&claims).map_err(TokenError::Encode)?;
        jws::sign(
            &payload,
            &self.key,
            JwsAlgorithm::Es256,
            &[],
            Some("at+jwt"),
        )
        .map_err(TokenError::Sign)
    }
}

/// A token whose signature was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The client id (`sub`).
    pub client_id: String,
    /// The generation (`gen`).
    pub generation: i64,
    /// Expiry (Unix seconds).
    pub exp: i64,
}

/// Verifies access tokens and remembers verified ones until they expire.
pub struct TokenVerifier {
    key: PKey<Public>,
    issuer: String,
    opts: VerifyOptions,
    cache: Mutex<HashMap<String, VerifiedToken>>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Allowed clock skew for `iat`, seconds.
const SKEW_SECS: i64 = 60;

impl TokenVerifier {
    /// A verifier for tokens of `issuer` signed by `key`.
    pub fn new(key: PKey<Public>, issuer: String) -> Self {
        Self {
            key,
            issuer,
            opts: VerifyOptions {
                max_len: MAX_TOKEN_BYTES,
                allowed_algorithms: vec![JwsAlgorithm::Es256],
            },
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Number of tokens remembered.
    pub fn cached(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The verified token, from the cache or by checking its signature,
    /// issuer, audience and times at `now` (Unix seconds).
    ///
    /// # Errors
    /// [`TokenError::Invalid`] with the reason.
    pub fn verify(&self, token: &str, now: i64) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Invalid("the access token is too long"));
        }
        {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(v) = cache.get(token) {
                if v.exp > now {
                    return Ok(v.clone());
                }
                return Err(TokenError::Invalid("the access token has expired"));
            }
        }
        let verified = jws::verify_with_key(token, &self.key, &self.opts)
            .map_err(|_| TokenError::Invalid("the access token is not one this gateway issued"))?;
        if verified.header.typ.as_deref() != Some("at+jwt") {
            return Err(TokenError::Invalid("the token is not an access token"));
        }
        let claims: Claims = serde_json::from_slice(&verified.payload)
            .map_err(|_| TokenError::Invalid("the access token's claims are malformed"))?;
        if claims.iss != self.issuer || claims.aud != self.issuer {
            return Err(TokenError::Invalid(
                "the access token was issued for another gateway",
            ));
        }
        if claims.exp <= now {
            return Err(TokenError::Invalid("the access token has expired"));
        }
        if claims.iat > now.saturating_add(SKEW_SECS) {
            return Err(TokenError::Invalid("the access token is not valid yet"));
        }
        let v = VerifiedToken {
            client_id: claims.sub,
            generation: claims.gen,
            exp: claims.exp,
        };
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED_TOKENS {
            cache.retain(|_, t| t.exp > now);
            if cache.len() >= MAX_CACHED_TOKENS {
                cache.clear();
            }
        }
        cache.insert(token.to_string(), v.clone());
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn pair() -> (PKey<Private>, PKey<Public>) {
        let key = ndxp_sign::key::KeyAlgorithm::EcP256.generate().unwrap();
        let public = PKey::public_key_from_pem(&key.public_key_to_pem().unwrap()).unwrap();
        (key, public)
    }

    #[test]
    fn secrets_verify_only_against_their_own_hash() {
        let s = generate_secret().unwrap();
        assert!(s.starts_with(SECRET_PREFIX));
        let h = hash_secret_with(&s, 1000).unwrap();
        assert!(!h.contains(&s));
        assert!(verify_secret(&s, &h));
        assert!(!verify_secret(&format!("{s}x"), &h));
        // Same secret, different salt: a different stored value.
        assert_ne!(h, hash_secret_with(&s, 1000).unwrap());
        assert!(!verify_secret(&s, "pbkdf2-sha256$1$AA==$AA=="));
        assert!(!verify_secret(&s, "plain"));
        assert!(check_is_costly(&h));
    }

    #[test]
    fn new_secrets_use_one_keyed_hash_and_verify_only_themselves() {
        let s = generate_secret().unwrap();
        let h = hash_secret(&s).unwrap();
        assert!(h.starts_with("hmac-sha256$"), "{h}");
        assert!(!h.contains(&s));
        assert!(!check_is_costly(&h));
        assert!(verify_secret(&s, &h));
        assert!(!verify_secret(&format!("{s}x"), &h));
        assert!(!verify_secret(&generate_secret().unwrap(), &h));
        assert_ne!(h, hash_secret(&s).unwrap(), "a fresh salt each time");
        assert!(!verify_secret(&s, "hmac-sha256$AA=="));
        assert!(!verify_secret(&s, "hmac-sha256$!!$AA=="));
    }

    #[test]
    fn tokens_verify_once_then_from_the_cache_until_expiry() {
        let (key, public) = pair();
        let issuer = TokenIssuer::new(key, "urn:ndxp:gateway:VN".into(), 300);
        let verifier = TokenVerifier::new(public, "urn:ndxp:gateway:VN".into());
        let t = issuer.issue("ndxpc_1", 3, 1_000_000).unwrap();
        let v = verifier.verify(&t, 1_000_001).unwrap();
        assert_eq!(v.client_id, "ndxpc_1");
        assert_eq!(v.generation, 3);
        assert_eq!(verifier.cached(), 1);
        assert_eq!(verifier.verify(&t, 1_000_002).unwrap(), v);
        assert_eq!(verifier.cached(), 1);
        assert!(verifier.verify(&t, 1_000_300).is_err(), "expired");
    }

    #[test]
    fn tokens_of_other_issuers_or_keys_are_refused() {
        let (key, public) = pair();
        let (other_key, _) = pair();
        let verifier = TokenVerifier::new(public, "urn:ndxp:gateway:VN".into());
        let foreign = TokenIssuer::new(other_key, "urn:ndxp:gateway:VN".into(), 300);
        assert!(verifier
            .verify(&foreign.issue("c", 1, 10).unwrap(), 11)
            .is_err());
        let elsewhere = TokenIssuer::new(key, "urn:ndxp:gateway:LA".into(), 300);
        assert!(verifier
            .verify(&elsewhere.issue("c", 1, 10).unwrap(), 11)
            .is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn arbitrary_tokens_never_panic_and_never_verify(s in ".{0,600}") {
            let (_, public) = pair();
            let verifier = TokenVerifier::new(public, "i".into());
            prop_assert!(verifier.verify(&s, 0).is_err());
        }

        #[test]
        fn arbitrary_stored_hashes_never_panic(s in "[a-z0-9$=+/]{0,80}", secret in ".{0,40}") {
            prop_assert!(!verify_secret(&secret, &s));
        }
    }
}
