//! Module loading, slot lookup and conversions between PKCS#11 and
//! OpenSSL forms.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::PkcsMgfType;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::slot::Slot;
use openssl::bn::BigNum;
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;

use super::{Pkcs11Error, TokenSelector};

/// Process-wide module contexts: `C_Initialize` may be called once per
/// module and process, and several stores (several keys) share a module.
pub(super) fn module_context(path: &Path) -> Result<Pkcs11, Pkcs11Error> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    if !path.is_file() {
        return Err(Pkcs11Error::ModuleNotFound {
            path: path.to_path_buf(),
        });
    }
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(ctx) = modules.get(path) {
        return Ok(ctx.clone());
    }
    let load_err = |source| Pkcs11Error::ModuleLoad {
        path: path.to_path_buf(),
        source,
    };
    let ctx = Pkcs11::new(path).map_err(load_err)?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(load_err(e)),
    }
    modules.insert(path.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// Whether an error means the session (or the token behind it) is gone, so
/// the session must not be reused and a fresh one may succeed.
pub(super) fn session_lost(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::UserNotLoggedIn,
            _
        )
    )
}

pub(super) fn token_gone(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::DeviceRemoved | RvError::TokenNotPresent | RvError::SlotIdInvalid,
            _
        )
    )
}

/// The hash mechanism, MGF and hash-and-sign PKCS#1 v1.5 mechanism for a
/// digest.
pub(super) fn digest_mechanisms(
    digest: MessageDigest,
) -> Result<(MechanismType, PkcsMgfType, Mechanism<'static>), Pkcs11Error> {
    let nid = digest.type_();
    if nid == Nid::SHA256 {
        Ok((
            MechanismType::SHA256,
            PkcsMgfType::MGF1_SHA256,
            Mechanism::Sha256RsaPkcs,
        ))
    } else if nid == Nid::SHA384 {
        Ok((
            MechanismType::SHA384,
            PkcsMgfType::MGF1_SHA384,
            Mechanism::Sha384RsaPkcs,
        ))
    } else if nid == Nid::SHA512 {
        Ok((
            MechanismType::SHA512,
            PkcsMgfType::MGF1_SHA512,
            Mechanism::Sha512RsaPkcs,
        ))
    } else {
        Err(Pkcs11Error::UnsupportedDigest(
            nid.short_name().unwrap_or("unknown").to_string(),
        ))
    }
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the point (PKCS#11 2.40);
/// some modules return the bare point. Either way, the uncompressed point.
pub(super) fn unwrap_ec_point(v: &[u8]) -> Option<&[u8]> {
    match v {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 && rest[0] == 0x04 => Some(rest),
        [0x04, ..] if v.len() == 65 => Some(v),
        _ => None,
    }
}

/// `CKM_ECDSA` returns `r || s`; key stores return DER `ECDSA-Sig-Value`.
pub(super) fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, Pkcs11Error> {
    if raw.len() != 64 {
        return Err(Pkcs11Error::UnsupportedKey(format!(
            "the token returned a {}-byte ECDSA signature, expected 64",
            raw.len()
        )));
    }
    let decode = |source| Pkcs11Error::Decode {
        what: "ECDSA signature",
        source,
    };
    let r = BigNum::from_slice(&raw[..32]).map_err(decode)?;
    let s = BigNum::from_slice(&raw[32..]).map_err(decode)?;
    EcdsaSig::from_private_components(r, s)
        .and_then(|sig| sig.to_der())
        .map_err(decode)
}

/// Finds the slot of the configured token; returns it with the token label.
pub(super) fn find_slot(
    ctx: &Pkcs11,
    module: &Path,
    wanted: &TokenSelector,
) -> Result<(Slot, String), Pkcs11Error> {
    let list_err = |source| Pkcs11Error::Token {
        op: "C_GetSlotList",
        token: wanted.to_string(),
        source,
    };
    let slots = ctx.get_slots_with_token().map_err(list_err)?;
    let mut present = Vec::new();
    let mut matching = Vec::new();
    for slot in slots {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        let label = info.label().trim_end().to_string();
        present.push(format!("{label:?} (slot {})", slot.id()));
        let hit = match wanted {
            TokenSelector::Label(l) => *l == label,
            TokenSelector::Slot(id) => *id == slot.id(),
        };
        if hit {
            matching.push((slot, label));
        }
    }
    match matching.len() {
        0 => Err(Pkcs11Error::TokenNotFound {
            wanted: wanted.to_string(),
            module: module.to_path_buf(),
            present,
        }),
        1 => Ok(matching.remove(0)),
        _ => Err(Pkcs11Error::AmbiguousToken(wanted.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_point_forms() {
        let mut wrapped = vec![0x04, 0x41, 0x04];
        wrapped.extend([7u8; 64]);
        assert_eq!(unwrap_ec_point(&wrapped).map(<[u8]>::len), Some(65));
        assert_eq!(unwrap_ec_point(&wrapped[2..]).map(<[u8]>::len), Some(65));
        // Compressed points and truncated input are refused, not misread.
        assert_eq!(unwrap_ec_point(&[0x04, 0x21, 0x02, 1, 2]), None);
        assert_eq!(unwrap_ec_point(&[]), None);
    }

    #[test]
    fn raw_ecdsa_signature_of_wrong_length_is_an_error() {
        assert!(ecdsa_raw_to_der(&[1u8; 63]).is_err());
        let der = ecdsa_raw_to_der(&[1u8; 64]).expect("64 bytes convert");
        let back = EcdsaSig::from_der(&der).expect("DER parses");
        assert_eq!(back.r().to_vec(), vec![1u8; 32]);
    }

    #[test]
    fn only_sha2_digests_are_accepted() {
        assert!(digest_mechanisms(MessageDigest::sha256()).is_ok());
        assert!(digest_mechanisms(MessageDigest::sha512()).is_ok());
        assert!(matches!(
            digest_mechanisms(MessageDigest::sha1()),
            Err(Pkcs11Error::UnsupportedDigest(_))
        ));
    }

    #[test]
    fn missing_module_is_named() {
        let err = module_context(Path::new("/nonexistent/libnothing.so")).unwrap_err();
        assert!(matches!(err, Pkcs11Error::ModuleNotFound { .. }));
        assert!(err.to_string().contains("/nonexistent/libnothing.so"));
    }
}
