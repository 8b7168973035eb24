//! Signing: [`create_signature`], [`attach_signature`], [`sign_request`],
//! [`sign_response`].

use http::header::{HeaderMap, HeaderName, HeaderValue};
use sfv::KeyRef;

use super::base::signature_base_at;
use super::verify::parse_dict_field;
use super::{
    MessageSigner, MessageView, RequestView, Result, SignatureError, SignatureParams, SIGNATURE,
    SIGNATURE_INPUT,
};

/// The result of signing: header values to attach, plus the base for logs.
#[derive(Debug, Clone)]
pub struct SignatureOutput {
    /// Label of the signature.
    pub label: String,
    /// `Signature-Input` member, e.g. `ndxp=("@method");created=1`.
    pub signature_input: String,
    /// `Signature` member, e.g. `ndxp=:...:`.
    pub signature: String,
    /// The raw signature bytes.
    pub signature_bytes: Vec<u8>,
    /// The signature base that was signed.
    pub base: String,
}

fn check_label(label: &str) -> Result<()> {
    KeyRef::from_str(label)
        .map(|_| ())
        .map_err(|_| SignatureError::InvalidLabel(label.to_owned()))
}

/// Compute a signature over `msg` without modifying it.
///
/// If `params` carries `keyid` or `alg`, they must match the key.
///
/// # Errors
/// Base construction errors, [`SignatureError::KeyIdMismatch`],
/// [`SignatureError::AlgorithmMismatch`], [`SignatureError::DuplicateLabel`]
/// when `label` is already used in the message.
pub fn create_signature(
    msg: &MessageView<'_>,
    label: &str,
    params: &SignatureParams,
    key: &(impl MessageSigner + ?Sized),
) -> Result<SignatureOutput> {
    check_label(label)?;
    if let Some(k) = params.keyid() {
        if k != key.keyid() {
            return Err(SignatureError::KeyIdMismatch {
                params: k.to_owned(),
                key: key.keyid().to_owned(),
            });
        }
    }
    if let Some(a) = params.alg() {
        if a != key.algorithm() {
            return Err(SignatureError::AlgorithmMismatch {
                key: key.algorithm(),
                declared: a,
            });
        }
    }
    let headers = msg.headers();
    for field in [SIGNATURE_INPUT, SIGNATURE] {
        if let Some(dict) = parse_dict_field(headers, field, usize::MAX)? {
            if dict.contains_key(label) {
                return Err(SignatureError::DuplicateLabel(label.to_owned()));
            }
        }
    }
    let (base, params_at) = signature_base_at(msg, params)?;
    let sig = key.sign_bytes(base.as_bytes())?;
    let mut signature_input = String::with_capacity(label.len() + 1 + base.len() - params_at);
    signature_input.push_str(label);
    signature_input.push('=');
    signature_input.push_str(&base[params_at..]);
    let mut signature = String::with_capacity(label.len() + 3 + sig.len().div_ceil(3) * 4);
    signature.push_str(label);
    signature.push_str("=:");
    base64::Engine::encode_string(
        &base64::engine::general_purpose::STANDARD,
        &sig,
        &mut signature,
    );
    signature.push(':');
    Ok(SignatureOutput {
        label: label.to_owned(),
        signature_input,
        signature,
        signature_bytes: sig,
        base,
    })
}

/// Append the output's members to `Signature-Input` and `Signature`.
///
/// # Errors
/// [`SignatureError::InvalidSignatureParams`] if a value is not a valid
/// header value (cannot happen for output of [`create_signature`]).
pub fn attach_signature(headers: &mut HeaderMap, out: &SignatureOutput) -> Result<()> {
    let bad = |_| SignatureError::InvalidSignatureParams("not a valid header value".into());
    let input = HeaderValue::from_str(&out.signature_input).map_err(bad)?;
    let sig = HeaderValue::from_str(&out.signature).map_err(bad)?;
    headers.append(HeaderName::from_static(SIGNATURE_INPUT), input);
    headers.append(HeaderName::from_static(SIGNATURE), sig);
    Ok(())
}

/// Sign a request head and add the `Signature-Input` / `Signature` members.
///
/// For a server-side origin-form URI that needs `@scheme` or `@target-uri`,
/// use [`create_signature`] with a [`RequestView::with_scheme`] view.
///
/// # Errors
/// As [`create_signature`].
pub fn sign_request(
    parts: &mut http::request::Parts,
    label: &str,
    params: &SignatureParams,
    key: &(impl MessageSigner + ?Sized),
) -> Result<SignatureOutput> {
    let out = create_signature(&MessageView::request(parts), label, params, key)?;
    attach_signature(&mut parts.headers, &out)?;
    Ok(out)
}

/// Sign a response head (with `req` components taken from `request`) and
/// add the `Signature-Input` / `Signature` members.
///
/// # Errors
/// As [`create_signature`].
pub fn sign_response(
    parts: &mut http::response::Parts,
    request: RequestView<'_>,
    label: &str,
    params: &SignatureParams,
    key: &(impl MessageSigner + ?Sized),
) -> Result<SignatureOutput> {
    let out = create_signature(
        &MessageView::response(parts, Some(request)),
        label,
        params,
        key,
    )?;
    attach_signature(&mut parts.headers, &out)?;
    Ok(out)
}
