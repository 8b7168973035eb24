//! Verification (RFC 9421 §3.2): [`verify`] under a [`VerifyPolicy`] with keys
//! from a [`KeyResolver`].

use std::borrow::Cow;

use http::header::HeaderMap;
use sfv::{BareItem, BareItemFromInput, Dictionary, FieldType, Item, Parameters, Parser, Version};

use super::base::signature_base_at;
use super::keys::sha256;
use super::{
    Algorithm, Component, MessageView, Result, SignatureError, SignatureParams, VerifyingKey,
    SIGNATURE, SIGNATURE_INPUT,
};

/// Looks up verification keys by `keyid`.
pub trait KeyResolver {
    /// The key for `keyid`, or `None` if unknown or untrusted.
    fn resolve(&self, keyid: &str) -> Option<VerifyingKey>;
}

impl<F> KeyResolver for F
where
    F: Fn(&str) -> Option<VerifyingKey>,
{
    fn resolve(&self, keyid: &str) -> Option<VerifyingKey> {
        self(keyid)
    }
}

/// Application requirements checked during verification (RFC 9421 §3.2.1).
#[derive(Debug, Clone)]
pub struct VerifyPolicy {
    /// Components the signature must cover.
    pub required_components: Vec<Component>,
    /// Maximum age of `created`, in seconds (`None`: no limit).
    pub max_age: Option<u64>,
    /// Allowed clock skew in seconds, applied to `created` in the future, to
    /// the maximum age and to `expires`.
    pub clock_skew: u64,
    /// Whether `created` must be present.
    pub require_created: bool,
    /// A `tag` value the signature must carry.
    pub required_tag: Option<String>,
    /// Algorithms accepted.
    pub allowed_algorithms: Vec<Algorithm>,
    /// Upper bound on the size of `Signature-Input` and `Signature`.
    pub max_field_bytes: usize,
}

impl VerifyPolicy {
    /// Policy requiring `required_components`, `created` within 300 s
    /// (±30 s skew), any supported algorithm, fields up to 16 KiB.
    #[must_use]
    pub fn new(required_components: Vec<Component>) -> Self {
        Self {
            required_components,
            max_age: Some(300),
            clock_skew: 30,
            require_created: true,
            required_tag: None,
            allowed_algorithms: Algorithm::ALL.to_vec(),
            max_field_bytes: 16 * 1024,
        }
    }
}

/// What was verified; suitable for logging and replay checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// The signature label.
    pub label: String,
    /// The `keyid` of the key that verified it.
    pub keyid: String,
    /// The algorithm used.
    pub algorithm: Algorithm,
    /// `created`, if present.
    pub created: Option<i64>,
    /// `expires`, if present.
    pub expires: Option<i64>,
    /// `nonce`, if present.
    pub nonce: Option<String>,
    /// `tag`, if present.
    pub tag: Option<String>,
    /// Covered components in order.
    pub components: Vec<Component>,
    /// The full parameter set as received.
    pub params: SignatureParams,
    /// Raw signature bytes.
    pub signature: Vec<u8>,
    /// SHA-256 of the signature base.
    pub base_sha256: [u8; 32],
    /// The signature base that was verified (RFC 9421 §2.5), built once:
    /// a receiver logs this very text.
    pub base: String,
    /// Where the serialized signature parameters start in `base` (the
    /// value of its last line, `"@signature-params": ...`).
    pub params_at: usize,
}

impl VerifiedSignature {
    /// The signature parameters as serialized in the base (and so in the
    /// `Signature-Input` member that was verified, after the label).
    #[must_use]
    pub fn serialized_params(&self) -> &str {
        self.base.get(self.params_at..).unwrap_or_default()
    }
}

pub(super) fn parse_dict_field(
    headers: &HeaderMap,
    field: &'static str,
    limit: usize,
) -> Result<Option<Dictionary>> {
    let Some(joined) = joined_field(headers, field, limit)? else {
        return Ok(None);
    };
    Parser::new(&*joined)
        .with_version(Version::Rfc8941)
        .parse()
        .map(Some)
        .map_err(|e| SignatureError::MalformedField {
            field: field.into(),
            source: e,
        })
}

/// The field lines of `field` joined with `, ` (borrowed when there is only
/// one), `None` when absent.
fn joined_field<'h>(
    headers: &'h HeaderMap,
    field: &'static str,
    limit: usize,
) -> Result<Option<Cow<'h, [u8]>>> {
    let mut lines = headers.get_all(field).iter();
    let Some(first) = lines.next() else {
        return Ok(None);
    };
    let too_large = || SignatureError::FieldTooLarge { field, limit };
    if first.len() > limit {
        return Err(too_large());
    }
    let joined: Cow<'_, [u8]> = match lines.next() {
        // One field line, the common case: parse it in place.
        None => Cow::Borrowed(first.as_bytes()),
        Some(second) => {
            let mut joined = first.as_bytes().to_vec();
            for v in std::iter::once(second).chain(lines) {
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(v.as_bytes());
                if joined.len() > limit {
                    return Err(too_large());
                }
            }
            Cow::Owned(joined)
        }
    };
    Ok(Some(joined))
}

/// Parse the `Signature-Input` member and `Signature` value for `label`.
///
/// # Errors
/// [`SignatureError::MissingHeader`], [`SignatureError::MalformedField`],
/// [`SignatureError::UnknownLabel`], [`SignatureError::MissingSignatureValue`],
/// [`SignatureError::InvalidSignatureParams`], [`SignatureError::FieldTooLarge`].
pub fn parse_signature_headers(
    headers: &HeaderMap,
    label: &str,
    max_field_bytes: usize,
) -> Result<(SignatureParams, Vec<u8>)> {
    // Both fields are parsed (and so validated) in full, but only the
    // label's members are kept, borrowed from the field text; RFC 8941
    // semantics hold: the last member with a key wins.
    let input = joined_field(headers, SIGNATURE_INPUT, max_field_bytes)?
        .ok_or(SignatureError::MissingHeader(SIGNATURE_INPUT))?;
    let member = labelled_member(&input, SIGNATURE_INPUT, label)?;
    let sig = joined_field(headers, SIGNATURE, max_field_bytes)?
        .ok_or(SignatureError::MissingHeader(SIGNATURE))?;
    let sig = labelled_member(&sig, SIGNATURE, label)?;
    let params = match member {
        None => return Err(SignatureError::UnknownLabel(label.to_owned())),
        Some(visit::Entry::InnerList(il)) => {
            let components = il
                .items
                .iter()
                .map(|(bare, params)| {
                    Component::from_parts(bare, params.iter().map(|(k, v)| (*k, v)), || {
                        let mut p = Parameters::new();
                        for (k, v) in params {
                            p.insert((*k).to_owned(), BareItem::from(v.clone()));
                        }
                        Item::with_params(BareItem::from(bare.clone()), p).serialize()
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            SignatureParams::from_parts(components, il.params.iter().map(|(k, v)| (*k, v)))?
        }
        Some(visit::Entry::Item(_)) => {
            return Err(SignatureError::InvalidSignatureParams(
                "signature input member is not an inner list".into(),
            ))
        }
    };
    let sig = match sig {
        Some(visit::Entry::Item(BareItemFromInput::ByteSequence(b))) => b,
        _ => return Err(SignatureError::MissingSignatureValue(label.to_owned())),
    };
    Ok((params, sig))
}

/// The last member labelled `label` of the Dictionary field `field` whose
/// joined lines are `text`, borrowed from it; the whole field is parsed (and
/// so validated).
fn labelled_member<'t>(
    text: &'t [u8],
    field: &'static str,
    label: &str,
) -> Result<Option<visit::Entry<'t>>> {
    Parser::new(text)
        .with_version(Version::Rfc8941)
        .parse_dictionary_with_visitor(visit::Member::new(label))
        .map_err(|e| SignatureError::MalformedField {
            field: field.into(),
            source: e,
        })
}

/// Visitors that keep one dictionary member, borrowed from the input.
mod visit {
    use std::convert::Infallible;

    use sfv::visitor::{
        DictionaryVisitor, EntryVisitor, Ignored, InnerListVisitor, ItemVisitor, ParameterVisitor,
    };
    use sfv::{BareItemFromInput, KeyRef};

    /// Parameters in first-seen key order, last value per key (RFC 8941
    /// §4.2.3.2), as `sfv::Parameters`.
    pub(super) type Params<'de> = Vec<(&'de KeyRef, BareItemFromInput<'de>)>;

    /// An inner list: items with their parameters, then its own parameters.
    pub(super) struct InnerList<'de> {
        pub(super) items: Vec<(BareItemFromInput<'de>, Params<'de>)>,
        pub(super) params: Params<'de>,
    }

    /// A dictionary member (an item's parameters are not kept).
    pub(super) enum Entry<'de> {
        Item(BareItemFromInput<'de>),
        InnerList(InnerList<'de>),
    }

    /// Keeps the last member named `label`.
    pub(super) struct Member<'l, 'de> {
        label: &'l str,
        found: Option<Entry<'de>>,
    }

    impl<'l> Member<'l, '_> {
        pub(super) fn new(label: &'l str) -> Self {
            Self { label, found: None }
        }
    }

    impl<'de> DictionaryVisitor<'de> for Member<'_, 'de> {
        type Out = Option<Entry<'de>>;
        type Error = Infallible;

        fn entry(&mut self, key: &'de KeyRef) -> Result<impl EntryVisitor<'de>, Self::Error> {
            Ok((key.as_str() == self.label).then_some(Slot(&mut self.found)))
        }

        fn finish(self) -> Result<Self::Out, Self::Error> {
            Ok(self.found)
        }
    }

    struct Slot<'a, 'de>(&'a mut Option<Entry<'de>>);

    impl<'de> EntryVisitor<'de> for Slot<'_, 'de> {
        type Error = Infallible;

        fn item(self) -> Result<impl ItemVisitor<'de>, Self::Error> {
            Ok(self)
        }

        fn inner_list(self) -> Result<impl InnerListVisitor<'de>, Self::Error> {
            *self.0 = Some(Entry::InnerList(InnerList {
                items: Vec::with_capacity(8),
                params: Vec::with_capacity(4),
            }));
            Ok(match self.0 {
                Some(Entry::InnerList(il)) => Some(il),
                _ => None,
            })
        }
    }

    impl<'de> ItemVisitor<'de> for Slot<'_, 'de> {
        type Out = ();
        type Error = Infallible;

        fn bare_item(
            self,
            bare_item: BareItemFromInput<'de>,
        ) -> Result<impl ParameterVisitor<'de, Out = Self::Out>, Self::Error> {
            *self.0 = Some(Entry::Item(bare_item));
            Ok(Ignored)
        }
    }

    impl<'de> InnerListVisitor<'de> for &mut InnerList<'de> {
        type Error = Infallible;

        fn item(&mut self) -> Result<impl ItemVisitor<'de>, Self::Error> {
            Ok(ListItem(&mut self.items))
        }

        fn finish(self) -> Result<impl ParameterVisitor<'de>, Self::Error> {
            Ok(ParamsVisitor(&mut self.params))
        }
    }

    struct ListItem<'a, 'de>(&'a mut Vec<(BareItemFromInput<'de>, Params<'de>)>);

    impl<'de> ItemVisitor<'de> for ListItem<'_, 'de> {
        type Out = ();
        type Error = Infallible;

        fn bare_item(
            self,
            bare_item: BareItemFromInput<'de>,
        ) -> Result<impl ParameterVisitor<'de, Out = Self::Out>, Self::Error> {
            let i = self.0.len();
            self.0.push((bare_item, Vec::new()));
            Ok(ParamsVisitor(&mut self.0[i].1))
        }
    }

    struct ParamsVisitor<'a, 'de>(&'a mut Params<'de>);

    impl<'de> ParameterVisitor<'de> for ParamsVisitor<'_, 'de> {
        type Out = ();
        type Error = Infallible;

        fn parameter(
            &mut self,
            key: &'de KeyRef,
            value: BareItemFromInput<'de>,
        ) -> Result<(), Self::Error> {
            match self.0.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => *v = value,
                None => self.0.push((key, value)),
            }
            Ok(())
        }

        fn finish(self) -> Result<Self::Out, Self::Error> {
            Ok(())
        }
    }
}

/// Verify the signature labelled `label` on `msg` at time `now` (Unix
/// seconds), with keys from `resolver`, under `policy`.
///
/// # Errors
/// Any [`SignatureError`] describing the first failed check.
pub fn verify(
    msg: &MessageView<'_>,
    label: &str,
    policy: &VerifyPolicy,
    now: i64,
    resolver: &dyn KeyResolver,
) -> Result<VerifiedSignature> {
    let (params, signature) =
        parse_signature_headers(msg.headers(), label, policy.max_field_bytes)?;
    verify_parsed(msg, label, params, signature, policy, now, resolver)
}

/// [`verify`] with the `Signature-Input` member and `Signature` value of
/// `label` already parsed by [`parse_signature_headers`] (a receiver that
/// checks the parameters first parses the fields once).
///
/// # Errors
/// As [`verify`], except the field parsing errors.
pub fn verify_parsed(
    msg: &MessageView<'_>,
    label: &str,
    params: SignatureParams,
    signature: Vec<u8>,
    policy: &VerifyPolicy,
    now: i64,
    resolver: &dyn KeyResolver,
) -> Result<VerifiedSignature> {
    for required in &policy.required_components {
        if !params.components.contains(required) {
            return Err(SignatureError::MissingRequiredComponent(
                required.display_lossy(),
            ));
        }
    }
    if let Some(expected) = &policy.required_tag {
        if params.tag() != Some(expected.as_str()) {
            return Err(SignatureError::TagMismatch {
                expected: expected.clone(),
                found: params.tag.clone(),
            });
        }
    }
    let skew = i64::try_from(policy.clock_skew).unwrap_or(i64::MAX);
    match params.created {
        Some(created) => {
            if created > now.saturating_add(skew) {
                return Err(SignatureError::CreatedInFuture { created, now });
            }
            if let Some(max_age) = policy.max_age {
                let max_age = i64::try_from(max_age).unwrap_or(i64::MAX);
                if now.saturating_sub(created) > max_age.saturating_add(skew) {
                    return Err(SignatureError::TooOld { created, now });
                }
            }
        }
        None if policy.require_created => return Err(SignatureError::MissingCreated),
        None => {}
    }
    if let Some(expires) = params.expires {
        if now > expires.saturating_add(skew) {
            return Err(SignatureError::Expired { expires, now });
        }
    }
    let keyid = params
        .keyid()
        .ok_or(SignatureError::MissingKeyId)?
        .to_owned();
    let key = resolver
        .resolve(&keyid)
        .ok_or_else(|| SignatureError::UnknownKey(keyid.clone()))?;
    if let Some(declared) = params.alg {
        if declared != key.algorithm() {
            return Err(SignatureError::AlgorithmMismatch {
                key: key.algorithm(),
                declared,
            });
        }
    }
    if !policy.allowed_algorithms.contains(&key.algorithm()) {
        return Err(SignatureError::AlgorithmNotAllowed(key.algorithm()));
    }
    let (base, params_at) = signature_base_at(msg, &params)?;
    let base_sha256 = sha256(base.as_bytes());
    match key.algorithm() {
        // The algorithm's own digest is the SHA-256 reported below.
        Algorithm::EcdsaP256Sha256 | Algorithm::RsaV15Sha256 => {
            key.verify_digest(&base_sha256, &signature)?;
        }
        Algorithm::RsaPssSha512 => key.verify_bytes(base.as_bytes(), &signature)?,
    }
    Ok(VerifiedSignature {
        label: label.to_owned(),
        keyid,
        algorithm: key.algorithm(),
        created: params.created,
        expires: params.expires,
        nonce: params.nonce.clone(),
        tag: params.tag.clone(),
        components: params.components.clone(),
        base_sha256,
        params,
        signature,
        base,
        params_at,
    })
}
