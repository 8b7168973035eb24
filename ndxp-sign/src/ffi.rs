//! The one place in the workspace that calls libcrypto directly.
//!
//! # Why this module exists
//!
//! The `openssl` crate covers certificates, keys, stores and the client side
//! of OCSP, but it has no RFC 3161 (time-stamp protocol) API at all, it cannot
//! build or sign an OCSP response, it cannot read the CertIDs of a parsed OCSP
//! request, and it has no OCSP nonce handling. libcrypto has all of these
//! (`TS_RESP_CTX`, `TS_VERIFY_CTX`, `OCSP_basic_sign`, `OCSP_copy_nonce`, ...),
//! so this module declares the few functions needed and wraps each of them in
//! a small safe function or an owning (RAII) type whose `Drop` frees the C
//! object. Everything outside this module is safe Rust.
//!
//! Conventions:
//! - Every `unsafe` block carries a `// SAFETY:` comment stating why the call
//!   is sound (pointer validity, ownership transfer, lifetimes).
//! - Pointers borrowed from `openssl` types come from
//!   [`ForeignTypeRef::as_ptr`]; objects handed over to libcrypto ("set0",
//!   freed by the callee) are either up-ref'd first or released from Rust's
//!   ownership with `mem::forget`.
//! - A NULL return or a return value other than the documented success value
//!   becomes an [`ErrorStack`] taken from the thread's OpenSSL error queue.
//! - Byte lengths are checked to fit in a C `int`/`long` before a call; an
//!   input that does not fit is reported as an error, never truncated.
//!
//! libcrypto 3.x is assumed (the build links the system OpenSSL 3):
//! `TS_VERIFY_CTX_set_certs` is the 3.x name, and `TS_VERIFY_CTX_set_store` /
//! `_set_certs` take ownership of their arguments as they do in 3.0–3.x
//! (3.4 deprecates them in favour of the `set0` spellings with the same
//! semantics).

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_long, c_uchar, c_void};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use chrono::{DateTime, NaiveDate, Utc};
use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::asn1::{Asn1IntegerRef, Asn1ObjectRef, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::ocsp::{
    OcspBasicResponse, OcspBasicResponseRef, OcspCertIdRef, OcspRequest, OcspRequestRef,
};
use openssl::pkcs7::{Pkcs7, Pkcs7Ref};
use openssl::pkey::{PKeyRef, Private};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreRef;
use openssl::x509::{X509Ref, X509};
use openssl_sys as sys;

/// Opaque libcrypto types and functions that `openssl-sys` 0.9 does not declare.
#[allow(non_camel_case_types)]
mod raw {
    use super::*;

    /// `TS_REQ`
    pub enum TS_REQ {}
    /// `TS_RESP`
    pub enum TS_RESP {}
    /// `TS_RESP_CTX`
    pub enum TS_RESP_CTX {}
    /// `TS_VERIFY_CTX`
    pub enum TS_VERIFY_CTX {}
    /// `TS_TST_INFO`
    pub enum TS_TST_INFO {}
    /// `TS_MSG_IMPRINT`
    pub enum TS_MSG_IMPRINT {}
    /// `TS_STATUS_INFO`
    pub enum TS_STATUS_INFO {}
    /// `OCSP_SINGLERESP`
    pub enum OCSP_SINGLERESP {}

    pub type TsSerialCb =
        unsafe extern "C" fn(ctx: *mut TS_RESP_CTX, data: *mut c_void) -> *mut sys::ASN1_INTEGER;

    extern "C" {
        // ---- generic ASN.1 / X.509 helpers ----
        pub fn ASN1_TIME_to_tm(s: *const sys::ASN1_TIME, tm: *mut libc::tm) -> c_int;
        pub fn ASN1_BIT_STRING_get_bit(a: *const sys::ASN1_BIT_STRING, n: c_int) -> c_int;
        pub fn X509_get0_pubkey_bitstr(x: *const sys::X509) -> *mut sys::ASN1_BIT_STRING;
        pub fn X509_STORE_up_ref(v: *mut sys::X509_STORE) -> c_int;
        pub fn X509_ALGOR_set0(
            alg: *mut sys::X509_ALGOR,
            aobj: *mut sys::ASN1_OBJECT,
            ptype: c_int,
            pval: *mut c_void,
        ) -> c_int;

        // ---- OCSP (RFC 6960) ----
        pub fn OCSP_request_onereq_count(req: *mut sys::OCSP_REQUEST) -> c_int;
        pub fn OCSP_request_onereq_get0(
            req: *mut sys::OCSP_REQUEST,
            i: c_int,
        ) -> *mut sys::OCSP_ONEREQ;
        pub fn OCSP_onereq_get0_id(one: *mut sys::OCSP_ONEREQ) -> *mut sys::OCSP_CERTID;
        pub fn OCSP_id_get0_info(
            pi_name_hash: *mut *mut sys::ASN1_OCTET_STRING,
            pmd: *mut *mut sys::ASN1_OBJECT,
            pi_key_hash: *mut *mut sys::ASN1_OCTET_STRING,
            pserial: *mut *mut sys::ASN1_INTEGER,
            cid: *mut sys::OCSP_CERTID,
        ) -> c_int;
        pub fn OCSP_request_add1_nonce(
            req: *mut sys::OCSP_REQUEST,
            val: *mut c_uchar,
            len: c_int,
        ) -> c_int;
        pub fn OCSP_check_nonce(req: *mut sys::OCSP_REQUEST, bs: *mut sys::OCSP_BASICRESP)
            -> c_int;
        pub fn OCSP_copy_nonce(
            resp: *mut sys::OCSP_BASICRESP,
            req: *mut sys::OCSP_REQUEST,
        ) -> c_int;
        pub fn OCSP_basic_add1_status(
            rsp: *mut sys::OCSP_BASICRESP,
            cid: *mut sys::OCSP_CERTID,
            status: c_int,
            reason: c_int,
            revtime: *mut sys::ASN1_TIME,
            thisupd: *mut sys::ASN1_TIME,
            nextupd: *mut sys::ASN1_TIME,
        ) -> *mut OCSP_SINGLERESP;
        pub fn OCSP_basic_sign(
            brsp: *mut sys::OCSP_BASICRESP,
            signer: *mut sys::X509,
            key: *mut sys::EVP_PKEY,
            dgst: *const sys::EVP_MD,
            certs: *mut sys::stack_st_X509,
            flags: std::ffi::c_ulong,
        ) -> c_int;
        pub fn OCSP_resp_get0_produced_at(
            bs: *const sys::OCSP_BASICRESP,
        ) -> *const sys::ASN1_GENERALIZEDTIME;

        // ---- Time-stamp protocol (RFC 3161) ----
        pub fn TS_REQ_new() -> *mut TS_REQ;
        pub fn TS_REQ_free(a: *mut TS_REQ);
        pub fn d2i_TS_REQ(a: *mut *mut TS_REQ, pp: *mut *const c_uchar, len: c_long)
            -> *mut TS_REQ;
        pub fn i2d_TS_REQ(a: *const TS_REQ, pp: *mut *mut c_uchar) -> c_int;
        pub fn TS_REQ_set_version(a: *mut TS_REQ, version: c_long) -> c_int;
        pub fn TS_REQ_get_version(a: *const TS_REQ) -> c_long;
        pub fn TS_REQ_set_msg_imprint(a: *mut TS_REQ, msg_imprint: *mut TS_MSG_IMPRINT) -> c_int;
        pub fn TS_REQ_get_msg_imprint(a: *mut TS_REQ) -> *mut TS_MSG_IMPRINT;
        pub fn TS_REQ_set_policy_id(a: *mut TS_REQ, policy: *const sys::ASN1_OBJECT) -> c_int;
        pub fn TS_REQ_get_policy_id(a: *mut TS_REQ) -> *mut sys::ASN1_OBJECT;
        pub fn TS_REQ_set_nonce(a: *mut TS_REQ, nonce: *const sys::ASN1_INTEGER) -> c_int;
        pub fn TS_REQ_get_nonce(a: *const TS_REQ) -> *const sys::ASN1_INTEGER;
        pub fn TS_REQ_set_cert_req(a: *mut TS_REQ, cert_req: c_int) -> c_int;
        pub fn TS_REQ_get_cert_req(a: *const TS_REQ) -> c_int;
        pub fn TS_REQ_get_ext_count(a: *mut TS_REQ) -> c_int;

        pub fn TS_MSG_IMPRINT_new() -> *mut TS_MSG_IMPRINT;
        pub fn TS_MSG_IMPRINT_free(a: *mut TS_MSG_IMPRINT);
        pub fn TS_MSG_IMPRINT_get_algo(a: *mut TS_MSG_IMPRINT) -> *mut sys::X509_ALGOR;
        pub fn TS_MSG_IMPRINT_set_msg(a: *mut TS_MSG_IMPRINT, d: *mut c_uchar, len: c_int)
            -> c_int;
        pub fn TS_MSG_IMPRINT_get_msg(a: *mut TS_MSG_IMPRINT) -> *mut sys::ASN1_OCTET_STRING;

        pub fn TS_RESP_free(a: *mut TS_RESP);
        pub fn d2i_TS_RESP(
            a: *mut *mut TS_RESP,
            pp: *mut *const c_uchar,
            len: c_long,
        ) -> *mut TS_RESP;
        pub fn i2d_TS_RESP(a: *const TS_RESP, pp: *mut *mut c_uchar) -> c_int;
        pub fn TS_RESP_get_status_info(a: *mut TS_RESP) -> *mut TS_STATUS_INFO;
        pub fn TS_RESP_get_token(a: *mut TS_RESP) -> *mut sys::PKCS7;
        pub fn TS_STATUS_INFO_get0_status(a: *const TS_STATUS_INFO) -> *const sys::ASN1_INTEGER;
        pub fn TS_STATUS_INFO_get0_failure_info(
            a: *const TS_STATUS_INFO,
        ) -> *const sys::ASN1_BIT_STRING;
        pub fn TS_STATUS_INFO_get0_text(a: *const TS_STATUS_INFO) -> *const sys::OPENSSL_STACK;

        pub fn PKCS7_to_TS_TST_INFO(token: *mut sys::PKCS7) -> *mut TS_TST_INFO;
        pub fn TS_TST_INFO_free(a: *mut TS_TST_INFO);
        pub fn TS_TST_INFO_get_version(a: *const TS_TST_INFO) -> c_long;
        pub fn TS_TST_INFO_get_policy_id(a: *mut TS_TST_INFO) -> *mut sys::ASN1_OBJECT;
        pub fn TS_TST_INFO_get_msg_imprint(a: *mut TS_TST_INFO) -> *mut TS_MSG_IMPRINT;
        pub fn TS_TST_INFO_get_serial(a: *const TS_TST_INFO) -> *const sys::ASN1_INTEGER;
        pub fn TS_TST_INFO_get_time(a: *const TS_TST_INFO) -> *const sys::ASN1_GENERALIZEDTIME;
        pub fn TS_TST_INFO_get_nonce(a: *const TS_TST_INFO) -> *const sys::ASN1_INTEGER;

        pub fn TS_RESP_CTX_new() -> *mut TS_RESP_CTX;
        pub fn TS_RESP_CTX_free(ctx: *mut TS_RESP_CTX);
        pub fn TS_RESP_CTX_set_signer_cert(ctx: *mut TS_RESP_CTX, signer: *mut sys::X509) -> c_int;
        pub fn TS_RESP_CTX_set_signer_key(ctx: *mut TS_RESP_CTX, key: *mut sys::EVP_PKEY) -> c_int;
        pub fn TS_RESP_CTX_set_signer_digest(
            ctx: *mut TS_RESP_CTX,
            signer_digest: *const sys::EVP_MD,
        ) -> c_int;
        pub fn TS_RESP_CTX_set_ess_cert_id_digest(
            ctx: *mut TS_RESP_CTX,
            md: *const sys::EVP_MD,
        ) -> c_int;
        pub fn TS_RESP_CTX_set_def_policy(
            ctx: *mut TS_RESP_CTX,
            def_policy: *const sys::ASN1_OBJECT,
        ) -> c_int;
        pub fn TS_RESP_CTX_set_certs(
            ctx: *mut TS_RESP_CTX,
            certs: *mut sys::stack_st_X509,
        ) -> c_int;
        pub fn TS_RESP_CTX_add_policy(
            ctx: *mut TS_RESP_CTX,
            policy: *const sys::ASN1_OBJECT,
        ) -> c_int;
        pub fn TS_RESP_CTX_add_md(ctx: *mut TS_RESP_CTX, md: *const sys::EVP_MD) -> c_int;
        pub fn TS_RESP_CTX_set_accuracy(
            ctx: *mut TS_RESP_CTX,
            secs: c_int,
            millis: c_int,
            micros: c_int,
        ) -> c_int;
        pub fn TS_RESP_CTX_add_flags(ctx: *mut TS_RESP_CTX, flags: c_int);
        pub fn TS_RESP_CTX_set_serial_cb(ctx: *mut TS_RESP_CTX, cb: TsSerialCb, data: *mut c_void);
        pub fn TS_RESP_CTX_set_status_info(
            ctx: *mut TS_RESP_CTX,
            status: c_int,
            text: *const c_char,
        ) -> c_int;
        pub fn TS_RESP_CTX_add_failure_info(ctx: *mut TS_RESP_CTX, failure: c_int) -> c_int;
        pub fn TS_RESP_create_response(
            ctx: *mut TS_RESP_CTX,
            req_bio: *mut sys::BIO,
        ) -> *mut TS_RESP;

        pub fn TS_VERIFY_CTX_new() -> *mut TS_VERIFY_CTX;
        pub fn TS_VERIFY_CTX_free(ctx: *mut TS_VERIFY_CTX);
        pub fn TS_VERIFY_CTX_set_flags(ctx: *mut TS_VERIFY_CTX, f: c_int) -> c_int;
        pub fn TS_VERIFY_CTX_add_flags(ctx: *mut TS_VERIFY_CTX, f: c_int) -> c_int;
        pub fn TS_VERIFY_CTX_set_store(
            ctx: *mut TS_VERIFY_CTX,
            s: *mut sys::X509_STORE,
        ) -> *mut sys::X509_STORE;
        pub fn TS_VERIFY_CTX_set_certs(
            ctx: *mut TS_VERIFY_CTX,
            certs: *mut sys::stack_st_X509,
        ) -> *mut sys::stack_st_X509;
        pub fn TS_REQ_to_TS_VERIFY_CTX(
            req: *mut TS_REQ,
            ctx: *mut TS_VERIFY_CTX,
        ) -> *mut TS_VERIFY_CTX;
        pub fn TS_RESP_verify_response(ctx: *mut TS_VERIFY_CTX, response: *mut TS_RESP) -> c_int;
        pub fn TS_RESP_verify_token(ctx: *mut TS_VERIFY_CTX, token: *mut sys::PKCS7) -> c_int;
    }

    pub const TS_STATUS_REJECTION: c_int = 2;
    pub const TS_INFO_SYSTEM_FAILURE: c_int = 25;
    pub const TS_TSA_NAME: c_int = 0x01;
    pub const TS_VFY_SIGNATURE: c_int = 1 << 0;
    pub const TS_VFY_VERSION: c_int = 1 << 1;
}

// ---------------------------------------------------------------------------
// Small shared helpers
// ---------------------------------------------------------------------------

/// Turns a C length into `usize`, treating negative values as an error.
fn len_from_c(len: c_int) -> Result<usize, ErrorStack> {
    usize::try_from(len).map_err(|_| ErrorStack::get())
}

/// A length that must fit a C `int`.
fn len_to_c_int(len: usize) -> Option<c_int> {
    c_int::try_from(len).ok()
}

/// Encodes an object with an `i2d_*` function into a fresh `Vec`.
///
/// # Safety
/// `obj` must be a valid pointer of the type `i2d` expects.
unsafe fn i2d_to_vec<T>(
    obj: *const T,
    i2d: unsafe extern "C" fn(*const T, *mut *mut c_uchar) -> c_int,
) -> Result<Vec<u8>, ErrorStack> {
    // SAFETY: the caller guarantees `obj` is valid; a NULL output pointer
    // asks i2d only for the length.
    let len = len_from_c(unsafe { i2d(obj, ptr::null_mut()) })?;
    if len == 0 {
        return Err(ErrorStack::get());
    }
    let mut buf = vec![0u8; len];
    let mut p = buf.as_mut_ptr();
    // SAFETY: `buf` has exactly the `len` bytes that i2d announced; i2d
    // advances `p` but never writes past `len` bytes.
    let written = len_from_c(unsafe { i2d(obj, &mut p) })?;
    buf.truncate(written);
    Ok(buf)
}

/// Decodes DER with a `d2i_*` function, requiring that the whole input is
/// consumed. Returns `None` when the bytes are not one complete object.
///
/// # Safety
/// `d2i` must be a matching `d2i_*` function returning a newly allocated
/// object (or NULL) that the caller takes ownership of.
unsafe fn d2i_exact<T>(
    der: &[u8],
    d2i: unsafe extern "C" fn(*mut *mut T, *mut *const c_uchar, c_long) -> *mut T,
    free: unsafe extern "C" fn(*mut T),
) -> Option<NonNull<T>> {
    let len = c_long::try_from(der.len()).ok()?;
    let mut p = der.as_ptr();
    // SAFETY: `p` points to `len` readable bytes; d2i reads at most `len`
    // bytes and returns a new object or NULL.
    let obj = NonNull::new(unsafe { d2i(ptr::null_mut(), &mut p, len) })?;
    // SAFETY: `p` was advanced inside the same slice by d2i.
    let consumed = unsafe { p.offset_from(der.as_ptr()) };
    if usize::try_from(consumed).ok() != Some(der.len()) {
        // SAFETY: `obj` was just allocated by d2i and is owned here.
        unsafe { free(obj.as_ptr()) };
        return None;
    }
    Some(obj)
}

/// The bytes of an `ASN1_STRING`-like object (OCTET STRING, BIT STRING...).
///
/// # Safety
/// `s` must be NULL or a valid `ASN1_STRING` of any subtype.
unsafe fn asn1_string_bytes<T>(s: *const T) -> Vec<u8> {
    if s.is_null() {
        return Vec::new();
    }
    let s = s.cast::<sys::ASN1_STRING>();
    // SAFETY: the caller guarantees `s` is a valid ASN1_STRING.
    let (data, len) = unsafe { (sys::ASN1_STRING_get0_data(s), sys::ASN1_STRING_length(s)) };
    match usize::try_from(len) {
        Ok(len) if !data.is_null() && len > 0 => {
            // SAFETY: ASN1_STRING_get0_data points to `len` valid bytes that
            // live as long as `s`; we copy them out immediately.
            unsafe { std::slice::from_raw_parts(data, len) }.to_vec()
        }
        _ => Vec::new(),
    }
}

/// Converts an `ASN1_TIME`/`ASN1_GENERALIZEDTIME` to UTC. `None` for an
/// invalid or out-of-range time.
///
/// # Safety
/// `t` must be NULL or a valid ASN.1 time object.
unsafe fn asn1_time_ptr_to_utc(t: *const sys::ASN1_TIME) -> Option<DateTime<Utc>> {
    if t.is_null() {
        return None;
    }
    // SAFETY: `libc::tm` is plain old data; all-zero is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is valid (caller) and `tm` is a valid out-parameter.
    if unsafe { raw::ASN1_TIME_to_tm(t, &mut tm) } != 1 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(
        tm.tm_year.checked_add(1900)?,
        u32::try_from(tm.tm_mon.checked_add(1)?).ok()?,
        u32::try_from(tm.tm_mday).ok()?,
    )?;
    let dt = date.and_hms_opt(
        u32::try_from(tm.tm_hour).ok()?,
        u32::try_from(tm.tm_min).ok()?,
        u32::try_from(tm.tm_sec).ok()?,
    )?;
    Some(dt.and_utc())
}

/// Converts a generalized time borrowed from an `openssl` type to UTC.
pub(crate) fn generalized_time_to_utc(
    t: &openssl::asn1::Asn1GeneralizedTimeRef,
) -> Option<DateTime<Utc>> {
    // SAFETY: an ASN1_GENERALIZEDTIME is an ASN1_STRING that ASN1_TIME_to_tm
    // accepts; the pointer is valid for the borrow.
    unsafe { asn1_time_ptr_to_utc(t.as_ptr().cast()) }
}

/// Dotted-decimal text of an OID (never a short name).
fn oid_text(obj: *const sys::ASN1_OBJECT) -> Option<String> {
    if obj.is_null() {
        return None;
    }
    let mut buf = [0u8; 256];
    let buf_len = len_to_c_int(buf.len())?;
    // SAFETY: `obj` is a valid ASN1_OBJECT (checked non-NULL, borrowed from a
    // live object by every caller); `buf` is writable for `buf_len` bytes and
    // OBJ_obj2txt NUL-terminates within it. `no_name = 1` forces digits.
    let n = unsafe { sys::OBJ_obj2txt(buf.as_mut_ptr().cast(), buf_len, obj, 1) };
    let n = usize::try_from(n).ok()?;
    if n == 0 || n >= buf.len() {
        return None;
    }
    String::from_utf8(buf.get(..n)?.to_vec()).ok()
}

/// Copies an `ASN1_INTEGER` into a `BigNum`.
///
/// # Safety
/// `i` must be NULL or a valid ASN1_INTEGER.
unsafe fn asn1_integer_to_bn(i: *const sys::ASN1_INTEGER) -> Option<BigNum> {
    if i.is_null() {
        return None;
    }
    // SAFETY: `i` is valid and outlives this call; the reference is only used
    // to copy the value.
    let int = unsafe { Asn1IntegerRef::from_ptr(i.cast_mut()) };
    int.to_bn().ok()
}

/// Builds an owned stack of (up-ref'd) certificates.
fn cert_stack(certs: &[X509]) -> Result<Stack<X509>, ErrorStack> {
    let mut stack = Stack::new()?;
    for c in certs {
        stack.push(c.clone())?;
    }
    Ok(stack)
}

/// A read-only memory BIO over a byte slice.
struct MemBio<'a> {
    bio: NonNull<sys::BIO>,
    _data: PhantomData<&'a [u8]>,
}

impl<'a> MemBio<'a> {
    fn new(data: &'a [u8]) -> Result<Self, ErrorStack> {
        let len = len_to_c_int(data.len()).ok_or_else(ErrorStack::get)?;
        // SAFETY: BIO_new_mem_buf makes a read-only BIO that borrows `data`;
        // the PhantomData ties the BIO's lifetime to the slice.
        let bio = unsafe { sys::BIO_new_mem_buf(data.as_ptr().cast(), len) };
        let bio = NonNull::new(bio).ok_or_else(ErrorStack::get)?;
        Ok(MemBio {
            bio,
            _data: PhantomData,
        })
    }
}

impl Drop for MemBio<'_> {
    fn drop(&mut self) {
        // SAFETY: the BIO was created by BIO_new_mem_buf and is owned here.
        unsafe { sys::BIO_free_all(self.bio.as_ptr()) };
    }
}

/// Defines an owning wrapper around a raw libcrypto pointer.
macro_rules! owned_ptr {
    ($(#[$m:meta])* $name:ident, $ctype:ty, $free:path) => {
        $(#[$m])*
        pub(crate) struct $name(NonNull<$ctype>);

        impl $name {
            /// Takes ownership of `p`; NULL becomes the current OpenSSL error.
            fn from_raw(p: *mut $ctype) -> Result<Self, ErrorStack> {
                NonNull::new(p).map($name).ok_or_else(ErrorStack::get)
            }

            fn as_ptr(&self) -> *mut $ctype {
                self.0.as_ptr()
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                // SAFETY: the pointer was allocated by libcrypto, is owned
                // exclusively by this wrapper and is freed exactly once.
                unsafe { $free(self.0.as_ptr()) };
            }
        }
    };
}

// ---------------------------------------------------------------------------
// X.509 helpers
// ---------------------------------------------------------------------------

/// The contents of the certificate's subjectPublicKey BIT STRING (what an
/// OCSP CertID's `issuerKeyHash` hashes).
pub(crate) fn public_key_bits(cert: &X509Ref) -> Vec<u8> {
    // SAFETY: `cert` is a valid X509 for the borrow; the returned BIT STRING
    // is internal to it and copied before the borrow ends.
    unsafe { asn1_string_bytes(raw::X509_get0_pubkey_bitstr(cert.as_ptr())) }
}

/// True when the certificate has an extendedKeyUsage extension that is marked
/// critical and contains exactly `id-kp-timeStamping` (RFC 3161 §2.3).
pub(crate) fn has_critical_timestamping_eku(cert: &X509Ref) -> bool {
    // SAFETY: `cert` is valid for the borrow. X509_get_ext_by_NID and
    // X509_get_ext return an index / an internal pointer; the extension is
    // only read while `cert` is borrowed. X509_get_extended_key_usage takes a
    // non-const pointer only to fill libcrypto's internal extension cache.
    unsafe {
        let x = cert.as_ptr();
        let idx = sys::X509_get_ext_by_NID(x, sys::NID_ext_key_usage, -1);
        if idx < 0 {
            return false;
        }
        let ext = sys::X509_get_ext(x, idx);
        if ext.is_null() || sys::X509_EXTENSION_get_critical(ext) != 1 {
            return false;
        }
        sys::X509_get_extended_key_usage(x) == sys::XKU_TIMESTAMP
    }
}

/// True when the certificate's extendedKeyUsage contains `id-kp-OCSPSigning`
/// (RFC 6960 §4.2.2.2 delegated responder).
pub(crate) fn has_ocsp_signing_eku(cert: &X509Ref) -> bool {
    // SAFETY: `cert` is valid for the borrow; the call only fills
    // libcrypto's internal extension cache and returns a bit mask
    // (all ones when the extension is absent).
    let xku = unsafe { sys::X509_get_extended_key_usage(cert.as_ptr()) };
    xku != u32::MAX && xku & sys::XKU_OCSP_SIGN != 0
}

// ---------------------------------------------------------------------------
// OCSP
// ---------------------------------------------------------------------------

/// The fields of one OCSP CertID.
pub(crate) struct CertIdInfo {
    /// Hash algorithm of the name and key hashes.
    pub hash_alg: Nid,
    /// Hash of the issuer's DER subject name.
    pub name_hash: Vec<u8>,
    /// Hash of the issuer's public key bits.
    pub key_hash: Vec<u8>,
    /// The certificate serial number.
    pub serial: BigNum,
}

/// Parses exactly one BER/DER `OCSPRequest`; `None` for anything else,
/// including trailing bytes after the request.
pub(crate) fn ocsp_request_from_der(der: &[u8]) -> Option<OcspRequest> {
    // SAFETY: d2i_OCSP_REQUEST/OCSP_REQUEST_free are a matching pair; the
    // returned pointer is owned and handed to OcspRequest, which frees it.
    unsafe {
        d2i_exact(der, sys::d2i_OCSP_REQUEST, sys::OCSP_REQUEST_free)
            .map(|p| OcspRequest::from_ptr(p.as_ptr()))
    }
}

/// The CertIDs of every `Request` in an OCSP request, in order.
pub(crate) fn ocsp_request_ids(req: &OcspRequestRef) -> Vec<&OcspCertIdRef> {
    // SAFETY: `req` is valid for the borrow; onereq/cert-id pointers are
    // internal to it, so the returned references borrow `req`.
    unsafe {
        let r = req.as_ptr();
        let n = raw::OCSP_request_onereq_count(r);
        let mut out = Vec::new();
        for i in 0..n.max(0) {
            let one = raw::OCSP_request_onereq_get0(r, i);
            if one.is_null() {
                continue;
            }
            let id = raw::OCSP_onereq_get0_id(one);
            if !id.is_null() {
                out.push(OcspCertIdRef::from_ptr(id));
            }
        }
        out
    }
}

/// Reads the fields of a CertID. `None` if a field is missing or the serial
/// cannot be represented.
pub(crate) fn ocsp_cert_id_info(id: &OcspCertIdRef) -> Option<CertIdInfo> {
    let mut name_hash = ptr::null_mut();
    let mut md = ptr::null_mut();
    let mut key_hash = ptr::null_mut();
    let mut serial = ptr::null_mut();
    // SAFETY: `id` is valid for the borrow; the out-pointers receive internal
    // pointers of `id`, which are only read (copied) below while it lives.
    unsafe {
        if raw::OCSP_id_get0_info(
            &mut name_hash,
            &mut md,
            &mut key_hash,
            &mut serial,
            id.as_ptr(),
        ) != 1
            || md.is_null()
        {
            return None;
        }
        Some(CertIdInfo {
            hash_alg: Nid::from_raw(sys::OBJ_obj2nid(md)),
            name_hash: asn1_string_bytes(name_hash),
            key_hash: asn1_string_bytes(key_hash),
            serial: asn1_integer_to_bn(serial)?,
        })
    }
}

/// Adds a nonce extension with the given value to a request.
pub(crate) fn ocsp_request_add_nonce(
    req: &mut OcspRequestRef,
    nonce: &[u8],
) -> Result<(), ErrorStack> {
    let len = len_to_c_int(nonce.len()).ok_or_else(ErrorStack::get)?;
    let mut copy = nonce.to_vec();
    // SAFETY: `req` is valid and exclusively borrowed; `copy` holds `len`
    // bytes that OCSP_request_add1_nonce copies (it does not keep the pointer).
    let ok = unsafe { raw::OCSP_request_add1_nonce(req.as_ptr(), copy.as_mut_ptr(), len) };
    if ok == 1 {
        Ok(())
    } else {
        Err(ErrorStack::get())
    }
}

/// Result of comparing the nonces of a request and a basic response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonceMatch {
    /// Both carry a nonce and they are equal.
    Equal,
    /// Neither carries a nonce.
    BothAbsent,
    /// Only the response carries a nonce.
    ResponseOnly,
    /// Only the request carries a nonce.
    RequestOnly,
    /// Both carry a nonce and they differ.
    Mismatch,
}

/// Compares the request's nonce with the response's (`OCSP_check_nonce`).
pub(crate) fn ocsp_check_nonce(req: &OcspRequestRef, bs: &OcspBasicResponseRef) -> NonceMatch {
    // SAFETY: both pointers are valid for the borrows; the function only
    // reads the extensions.
    match unsafe { raw::OCSP_check_nonce(req.as_ptr(), bs.as_ptr()) } {
        1 => NonceMatch::Equal,
        2 => NonceMatch::BothAbsent,
        3 => NonceMatch::ResponseOnly,
        -1 => NonceMatch::RequestOnly,
        _ => NonceMatch::Mismatch,
    }
}

/// A fresh, empty basic response.
pub(crate) fn ocsp_basic_new() -> Result<OcspBasicResponse, ErrorStack> {
    // SAFETY: OCSP_BASICRESP_new returns a new object or NULL; ownership
    // passes to the returned OcspBasicResponse.
    let p = unsafe { sys::OCSP_BASICRESP_new() };
    if p.is_null() {
        return Err(ErrorStack::get());
    }
    // SAFETY: `p` is a valid, owned OCSP_BASICRESP.
    Ok(unsafe { OcspBasicResponse::from_ptr(p) })
}

/// The status of one SingleResponse, in libcrypto's terms.
pub(crate) enum SingleStatus<'a> {
    /// `good`
    Good,
    /// `revoked` at a time, with a reason code (`None` = no reasonCode).
    Revoked(&'a Asn1Time, Option<c_int>),
    /// `unknown`
    Unknown,
}

/// Appends a SingleResponse for `id` to the basic response.
pub(crate) fn ocsp_basic_add_status(
    bs: &mut OcspBasicResponseRef,
    id: &OcspCertIdRef,
    status: SingleStatus<'_>,
    this_update: &Asn1Time,
    next_update: Option<&Asn1Time>,
) -> Result<(), ErrorStack> {
    let (code, reason, revtime) = match status {
        SingleStatus::Good => (sys::V_OCSP_CERTSTATUS_GOOD, -1, ptr::null_mut()),
        SingleStatus::Revoked(at, reason) => (
            sys::V_OCSP_CERTSTATUS_REVOKED,
            reason.unwrap_or(sys::OCSP_REVOKED_STATUS_NOSTATUS),
            at.as_ptr(),
        ),
        SingleStatus::Unknown => (sys::V_OCSP_CERTSTATUS_UNKNOWN, -1, ptr::null_mut()),
    };
    let next = next_update.map_or(ptr::null_mut(), |t| t.as_ptr());
    // SAFETY: all pointers are valid for the call or NULL where allowed
    // (revtime only for non-revoked, nextupd optional). The function copies
    // the CertID and the times ("add1"); the returned SINGLERESP is internal
    // to `bs` and not kept.
    let single = unsafe {
        raw::OCSP_basic_add1_status(
            bs.as_ptr(),
            id.as_ptr(),
            code,
            reason,
            revtime,
            this_update.as_ptr(),
            next,
        )
    };
    if single.is_null() {
        Err(ErrorStack::get())
    } else {
        Ok(())
    }
}

/// Copies the request's nonce (if any) into the response.
pub(crate) fn ocsp_copy_nonce(
    bs: &mut OcspBasicResponseRef,
    req: &OcspRequestRef,
) -> Result<(), ErrorStack> {
    // SAFETY: both are valid; the extension is duplicated into `bs`.
    // Returns 1 when copied, 2 when the request has no nonce, <= 0 on error.
    if unsafe { raw::OCSP_copy_nonce(bs.as_ptr(), req.as_ptr()) } > 0 {
        Ok(())
    } else {
        Err(ErrorStack::get())
    }
}

/// Signs the basic response, including `signer` and `extra` certificates.
pub(crate) fn ocsp_basic_sign(
    bs: &mut OcspBasicResponseRef,
    signer: &X509Ref,
    key: &PKeyRef<Private>,
    digest: Option<MessageDigest>,
    extra: &[X509],
) -> Result<(), ErrorStack> {
    let stack = cert_stack(extra)?;
    let md = digest.map_or(ptr::null(), |m| m.as_ptr());
    // SAFETY: all pointers are valid for the call; OCSP_basic_sign up-refs
    // the signer and the extra certificates it embeds and does not keep
    // `key`, `md` or the stack itself, which is freed by `stack`'s Drop.
    let ok = unsafe {
        raw::OCSP_basic_sign(
            bs.as_ptr(),
            signer.as_ptr(),
            key.as_ptr(),
            md,
            stack.as_ptr(),
            0,
        )
    };
    if ok == 1 {
        Ok(())
    } else {
        Err(ErrorStack::get())
    }
}

/// The `producedAt` time of a basic response.
pub(crate) fn ocsp_produced_at(bs: &OcspBasicResponseRef) -> Option<DateTime<Utc>> {
    // SAFETY: `bs` is valid; producedAt is an internal generalized time that
    // is read while the borrow lives.
    unsafe { asn1_time_ptr_to_utc(raw::OCSP_resp_get0_produced_at(bs.as_ptr()).cast()) }
}

// ---------------------------------------------------------------------------
// Time-stamp protocol (RFC 3161)
// ---------------------------------------------------------------------------

owned_ptr!(
    /// An owned `TS_REQ` (TimeStampReq).
    TsReq,
    raw::TS_REQ,
    raw::TS_REQ_free
);
owned_ptr!(
    /// An owned `TS_RESP` (TimeStampResp).
    TsResp,
    raw::TS_RESP,
    raw::TS_RESP_free
);
owned_ptr!(
    /// An owned `TS_TST_INFO` (TSTInfo).
    TsTstInfo,
    raw::TS_TST_INFO,
    raw::TS_TST_INFO_free
);
owned_ptr!(
    /// An owned `TS_MSG_IMPRINT`.
    TsMsgImprint,
    raw::TS_MSG_IMPRINT,
    raw::TS_MSG_IMPRINT_free
);
owned_ptr!(
    /// An owned `TS_RESP_CTX`.
    TsRespCtx,
    raw::TS_RESP_CTX,
    raw::TS_RESP_CTX_free
);
owned_ptr!(
    /// An owned `TS_VERIFY_CTX`.
    TsVerifyCtx,
    raw::TS_VERIFY_CTX,
    raw::TS_VERIFY_CTX_free
);

/// A MessageImprint as read from a query or a TSTInfo.
pub(crate) struct RawImprint {
    /// The hash algorithm OID's NID (`UNDEF` for an unknown OID).
    pub alg: Nid,
    /// Dotted OID of the hash algorithm.
    pub alg_oid: Option<String>,
    /// True when the AlgorithmIdentifier parameters are absent or NULL.
    pub params_ok: bool,
    /// The hashed message.
    pub digest: Vec<u8>,
}

/// Reads a `TS_MSG_IMPRINT`.
///
/// # Safety
/// `mi` must be NULL or valid for the duration of the call.
unsafe fn read_imprint(mi: *mut raw::TS_MSG_IMPRINT) -> Option<RawImprint> {
    if mi.is_null() {
        return None;
    }
    // SAFETY: `mi` is valid (caller); the algorithm, OID, parameter and
    // digest pointers are internal to it and copied before returning.
    unsafe {
        let algo = raw::TS_MSG_IMPRINT_get_algo(mi);
        if algo.is_null() {
            return None;
        }
        let mut obj: *const sys::ASN1_OBJECT = ptr::null();
        let mut ptype: c_int = 0;
        // The parameter value is not needed, only its type (NULL allowed).
        sys::X509_ALGOR_get0(&mut obj, &mut ptype, ptr::null_mut(), algo);
        if obj.is_null() {
            return None;
        }
        // ptype is V_ASN1_UNDEF (-1) when parameters are absent.
        Some(RawImprint {
            alg: Nid::from_raw(sys::OBJ_obj2nid(obj)),
            alg_oid: oid_text(obj),
            params_ok: ptype == sys::V_ASN1_NULL || ptype == -1,
            digest: asn1_string_bytes(raw::TS_MSG_IMPRINT_get_msg(mi)),
        })
    }
}

impl TsReq {
    /// Parses a DER TimeStampReq; `None` unless the bytes are exactly one.
    pub(crate) fn from_der(der: &[u8]) -> Option<Self> {
        // SAFETY: d2i_TS_REQ/TS_REQ_free are a matching decode/free pair.
        unsafe { d2i_exact(der, raw::d2i_TS_REQ, raw::TS_REQ_free) }.map(TsReq)
    }

    /// Builds a version-1 request.
    pub(crate) fn build(
        digest: MessageDigest,
        imprint: &[u8],
        policy: Option<&Asn1ObjectRef>,
        nonce: Option<&BigNum>,
        cert_req: bool,
    ) -> Result<Self, ErrorStack> {
        let imprint_len = len_to_c_int(imprint.len()).ok_or_else(ErrorStack::get)?;
        let nonce_int = nonce.map(|n| n.to_asn1_integer()).transpose()?;
        // SAFETY: every object is freshly allocated and owned by a wrapper.
        // The "set" functions below copy their arguments (policy, nonce,
        // message imprint and its digest), so nothing borrowed is retained.
        // X509_ALGOR_set0 takes ownership of the OID from OBJ_nid2obj, which
        // is a static table entry that freeing leaves untouched.
        unsafe {
            let req = TsReq::from_raw(raw::TS_REQ_new())?;
            if raw::TS_REQ_set_version(req.as_ptr(), 1) != 1 {
                return Err(ErrorStack::get());
            }
            let mi = TsMsgImprint::from_raw(raw::TS_MSG_IMPRINT_new())?;
            let algo = raw::TS_MSG_IMPRINT_get_algo(mi.as_ptr());
            if algo.is_null() {
                return Err(ErrorStack::get());
            }
            let obj = sys::OBJ_nid2obj(digest.type_().as_raw());
            if obj.is_null()
                || raw::X509_ALGOR_set0(algo, obj, sys::V_ASN1_NULL, ptr::null_mut()) != 1
            {
                return Err(ErrorStack::get());
            }
            let mut copy = imprint.to_vec();
            if raw::TS_MSG_IMPRINT_set_msg(mi.as_ptr(), copy.as_mut_ptr(), imprint_len) != 1 {
                return Err(ErrorStack::get());
            }
            if raw::TS_REQ_set_msg_imprint(req.as_ptr(), mi.as_ptr()) != 1 {
                return Err(ErrorStack::get());
            }
            if let Some(p) = policy {
                if raw::TS_REQ_set_policy_id(req.as_ptr(), p.as_ptr()) != 1 {
                    return Err(ErrorStack::get());
                }
            }
            if let Some(n) = &nonce_int {
                if raw::TS_REQ_set_nonce(req.as_ptr(), n.as_ptr()) != 1 {
                    return Err(ErrorStack::get());
                }
            }
            if raw::TS_REQ_set_cert_req(req.as_ptr(), c_int::from(cert_req)) != 1 {
                return Err(ErrorStack::get());
            }
            Ok(req)
        }
    }

    /// DER encoding.
    pub(crate) fn to_der(&self) -> Result<Vec<u8>, ErrorStack> {
        // SAFETY: `self` owns a valid TS_REQ; i2d_TS_REQ matches its type.
        unsafe { i2d_to_vec(self.as_ptr().cast_const(), raw::i2d_TS_REQ) }
    }

    /// The version field.
    pub(crate) fn version(&self) -> i64 {
        // SAFETY: `self` owns a valid TS_REQ.
        #[allow(clippy::useless_conversion)] // c_long is 32 bits on some targets
        i64::from(unsafe { raw::TS_REQ_get_version(self.as_ptr()) })
    }

    /// The message imprint.
    pub(crate) fn imprint(&self) -> Option<RawImprint> {
        // SAFETY: `self` owns a valid TS_REQ; the imprint is internal to it.
        unsafe { read_imprint(raw::TS_REQ_get_msg_imprint(self.as_ptr())) }
    }

    /// The requested policy OID, dotted.
    pub(crate) fn policy(&self) -> Option<String> {
        // SAFETY: `self` owns a valid TS_REQ; the OID is internal to it.
        oid_text(unsafe { raw::TS_REQ_get_policy_id(self.as_ptr()) })
    }

    /// The nonce.
    pub(crate) fn nonce(&self) -> Option<BigNum> {
        // SAFETY: `self` owns a valid TS_REQ; the nonce is internal to it.
        unsafe { asn1_integer_to_bn(raw::TS_REQ_get_nonce(self.as_ptr())) }
    }

    /// The certReq flag.
    pub(crate) fn cert_req(&self) -> bool {
        // SAFETY: `self` owns a valid TS_REQ.
        unsafe { raw::TS_REQ_get_cert_req(self.as_ptr()) != 0 }
    }

    /// Number of request extensions.
    pub(crate) fn extension_count(&self) -> usize {
        // SAFETY: `self` owns a valid TS_REQ.
        usize::try_from(unsafe { raw::TS_REQ_get_ext_count(self.as_ptr()) }).unwrap_or(0)
    }
}

/// The PKIStatusInfo of a time-stamp response.
pub(crate) struct RawStatus {
    /// PKIStatus value (0 granted, 1 grantedWithMods, 2 rejection, ...).
    pub status: i64,
    /// Bit numbers set in PKIFailureInfo.
    pub failure_bits: Vec<u8>,
    /// The statusString texts.
    pub text: Vec<String>,
}

impl TsResp {
    /// Parses a DER TimeStampResp; `None` unless the bytes are exactly one.
    pub(crate) fn from_der(der: &[u8]) -> Option<Self> {
        // SAFETY: d2i_TS_RESP/TS_RESP_free are a matching decode/free pair.
        unsafe { d2i_exact(der, raw::d2i_TS_RESP, raw::TS_RESP_free) }.map(TsResp)
    }

    /// DER encoding.
    pub(crate) fn to_der(&self) -> Result<Vec<u8>, ErrorStack> {
        // SAFETY: `self` owns a valid TS_RESP; i2d_TS_RESP matches its type.
        unsafe { i2d_to_vec(self.as_ptr().cast_const(), raw::i2d_TS_RESP) }
    }

    /// The status, failure bits and texts.
    pub(crate) fn status(&self) -> Option<RawStatus> {
        // SAFETY: `self` owns a valid TS_RESP; the status info and its parts
        // are internal and copied out before returning.
        unsafe {
            let si = raw::TS_RESP_get_status_info(self.as_ptr());
            if si.is_null() {
                return None;
            }
            let status = asn1_integer_to_bn(raw::TS_STATUS_INFO_get0_status(si))?;
            let status: i64 = status.to_dec_str().ok()?.parse().ok()?;
            let fi = raw::TS_STATUS_INFO_get0_failure_info(si);
            let mut failure_bits = Vec::new();
            if !fi.is_null() {
                for bit in 0u8..32 {
                    if raw::ASN1_BIT_STRING_get_bit(fi, c_int::from(bit)) == 1 {
                        failure_bits.push(bit);
                    }
                }
            }
            let mut text = Vec::new();
            let texts = raw::TS_STATUS_INFO_get0_text(si);
            if !texts.is_null() {
                for i in 0..sys::OPENSSL_sk_num(texts).max(0) {
                    let s = sys::OPENSSL_sk_value(texts, i).cast::<sys::ASN1_STRING>();
                    text.push(String::from_utf8_lossy(&asn1_string_bytes(s)).into_owned());
                }
            }
            Some(RawStatus {
                status,
                failure_bits,
                text,
            })
        }
    }

    /// The token (ContentInfo with SignedData), if the response has one.
    pub(crate) fn token(&self) -> Option<Pkcs7> {
        // SAFETY: `self` owns a valid TS_RESP; the token pointer is internal
        // and re-encoded into an independent owned copy.
        let der = unsafe {
            let p = raw::TS_RESP_get_token(self.as_ptr());
            if p.is_null() {
                return None;
            }
            Pkcs7Ref::from_ptr(p).to_der().ok()?
        };
        Pkcs7::from_der(&der).ok()
    }
}

impl TsTstInfo {
    /// Decodes the TSTInfo carried inside a token.
    pub(crate) fn from_token(token: &Pkcs7Ref) -> Result<Self, ErrorStack> {
        // SAFETY: `token` is valid for the borrow; PKCS7_to_TS_TST_INFO
        // returns a newly allocated TSTInfo (or NULL) that we own.
        TsTstInfo::from_raw(unsafe { raw::PKCS7_to_TS_TST_INFO(token.as_ptr()) })
    }

    /// The version field.
    pub(crate) fn version(&self) -> i64 {
        // SAFETY: `self` owns a valid TSTInfo.
        #[allow(clippy::useless_conversion)] // c_long is 32 bits on some targets
        i64::from(unsafe { raw::TS_TST_INFO_get_version(self.as_ptr()) })
    }

    /// genTime.
    pub(crate) fn gen_time(&self) -> Option<DateTime<Utc>> {
        // SAFETY: `self` owns a valid TSTInfo; genTime is internal to it.
        unsafe { asn1_time_ptr_to_utc(raw::TS_TST_INFO_get_time(self.as_ptr()).cast()) }
    }

    /// serialNumber.
    pub(crate) fn serial(&self) -> Option<BigNum> {
        // SAFETY: `self` owns a valid TSTInfo; the serial is internal to it.
        unsafe { asn1_integer_to_bn(raw::TS_TST_INFO_get_serial(self.as_ptr())) }
    }

    /// The policy OID, dotted.
    pub(crate) fn policy(&self) -> Option<String> {
        // SAFETY: `self` owns a valid TSTInfo; the OID is internal to it.
        oid_text(unsafe { raw::TS_TST_INFO_get_policy_id(self.as_ptr()) })
    }

    /// The message imprint.
    pub(crate) fn imprint(&self) -> Option<RawImprint> {
        // SAFETY: `self` owns a valid TSTInfo; the imprint is internal to it.
        unsafe { read_imprint(raw::TS_TST_INFO_get_msg_imprint(self.as_ptr())) }
    }

    /// The nonce.
    pub(crate) fn nonce(&self) -> Option<BigNum> {
        // SAFETY: `self` owns a valid TSTInfo; the nonce is internal to it.
        unsafe { asn1_integer_to_bn(raw::TS_TST_INFO_get_nonce(self.as_ptr())) }
    }
}

/// What a time-stamp authority signs with and accepts.
pub(crate) struct TsaParams<'a> {
    /// TSA certificate (critical EKU timeStamping).
    pub cert: &'a X509Ref,
    /// TSA private key.
    pub key: &'a PKeyRef<Private>,
    /// Extra certificates to include when certReq is set.
    pub chain: &'a [X509],
    /// Default policy.
    pub policy: &'a Asn1ObjectRef,
    /// Further acceptable policies.
    pub other_policies: &'a [openssl::asn1::Asn1Object],
    /// Accepted message-imprint hash algorithms.
    pub digests: &'a [MessageDigest],
    /// Digest used for the CMS signature.
    pub signer_digest: MessageDigest,
    /// Accuracy in seconds to state, if any.
    pub accuracy_secs: Option<u32>,
}

/// Serial-number callback: a fresh random 127-bit positive integer per token.
///
/// A plain function with no Rust panics reachable (it only calls fallible
/// `openssl` functions and matches on the results), so no unwinding can
/// cross the C boundary.
unsafe extern "C" fn random_serial_cb(
    ctx: *mut raw::TS_RESP_CTX,
    _data: *mut c_void,
) -> *mut sys::ASN1_INTEGER {
    let serial = BigNum::new().and_then(|mut bn| {
        bn.rand(127, MsbOption::ONE, false)?;
        bn.to_asn1_integer()
    });
    match serial {
        // Ownership passes to libcrypto, which frees it after copying.
        Ok(i) => {
            let p = i.as_ptr();
            std::mem::forget(i);
            p
        }
        Err(_) => {
            // SAFETY: `ctx` is the live context libcrypto passed in; the text
            // is a NUL-terminated static string that is copied.
            unsafe {
                raw::TS_RESP_CTX_set_status_info(
                    ctx,
                    raw::TS_STATUS_REJECTION,
                    c"Error during serial number generation.".as_ptr(),
                );
                raw::TS_RESP_CTX_add_failure_info(ctx, raw::TS_INFO_SYSTEM_FAILURE);
            }
            ptr::null_mut()
        }
    }
}

/// Answers a DER TimeStampReq with `TS_RESP_create_response`. The returned
/// response may be a rejection; `Err` only when libcrypto could not produce
/// any response.
pub(crate) fn ts_create_response(p: &TsaParams<'_>, query: &[u8]) -> Result<TsResp, ErrorStack> {
    let chain = cert_stack(p.chain)?;
    let bio = MemBio::new(query)?;
    // SAFETY: the context is fresh and owned by `ctx`. Every setter below
    // up-refs or copies its argument (signer cert and key are up-ref'd,
    // the chain stack is deep-copied with up-ref'd certificates, policies and
    // digests are duplicated or static), so the borrowed inputs need only
    // live for the call. The serial callback takes no user data.
    unsafe {
        let ctx = TsRespCtx::from_raw(raw::TS_RESP_CTX_new())?;
        let c = ctx.as_ptr();
        let ok = raw::TS_RESP_CTX_set_signer_cert(c, p.cert.as_ptr()) == 1
            && raw::TS_RESP_CTX_set_signer_key(c, p.key.as_ptr()) == 1
            && raw::TS_RESP_CTX_set_signer_digest(c, p.signer_digest.as_ptr()) == 1
            && raw::TS_RESP_CTX_set_ess_cert_id_digest(c, MessageDigest::sha256().as_ptr()) == 1
            && raw::TS_RESP_CTX_set_def_policy(c, p.policy.as_ptr()) == 1
            && raw::TS_RESP_CTX_set_certs(c, chain.as_ptr()) == 1;
        if !ok {
            return Err(ErrorStack::get());
        }
        for pol in p.other_policies {
            if raw::TS_RESP_CTX_add_policy(c, pol.as_ptr()) != 1 {
                return Err(ErrorStack::get());
            }
        }
        for md in p.digests {
            if raw::TS_RESP_CTX_add_md(c, md.as_ptr()) != 1 {
                return Err(ErrorStack::get());
            }
        }
        if let Some(secs) = p.accuracy_secs {
            let secs = c_int::try_from(secs).map_err(|_| ErrorStack::get())?;
            if raw::TS_RESP_CTX_set_accuracy(c, secs, 0, 0) != 1 {
                return Err(ErrorStack::get());
            }
        }
        raw::TS_RESP_CTX_add_flags(c, raw::TS_TSA_NAME);
        raw::TS_RESP_CTX_set_serial_cb(c, random_serial_cb, ptr::null_mut());
        let resp = TsResp::from_raw(raw::TS_RESP_create_response(c, bio.bio.as_ptr()));
        // libcrypto leaves diagnostic entries on the queue for rejected
        // requests; they are reflected in the response, not errors here.
        if resp.is_ok() {
            sys::ERR_clear_error();
        }
        resp
    }
}

/// Hands an up-ref'd store and copies of the untrusted certificates to a
/// verification context.
fn set_trust(
    ctx: &TsVerifyCtx,
    store: &X509StoreRef,
    untrusted: &[X509],
) -> Result<(), ErrorStack> {
    let certs = cert_stack(untrusted)?;
    // SAFETY: `ctx` is valid and owned, with no store or certificates set
    // yet (they are set exactly once, so nothing is leaked).
    // TS_VERIFY_CTX_set_store and _set_certs take ownership (freed in
    // TS_VERIFY_CTX_free), so the store is up-ref'd first and the stack is
    // handed over and forgotten so Rust no longer frees it.
    unsafe {
        if raw::X509_STORE_up_ref(store.as_ptr()) != 1 {
            return Err(ErrorStack::get());
        }
        raw::TS_VERIFY_CTX_set_store(ctx.as_ptr(), store.as_ptr());
        let certs_ptr = certs.as_ptr();
        std::mem::forget(certs);
        raw::TS_VERIFY_CTX_set_certs(ctx.as_ptr(), certs_ptr);
    }
    Ok(())
}

/// Verifies a response against the request it answers: status granted,
/// signature and certificate chain (purpose timeStampSigning), ESS signing
/// certificate, version, message imprint, nonce (if the request had one) and
/// policy (if the request named one).
pub(crate) fn ts_verify_response(
    resp: &TsResp,
    req: &TsReq,
    store: &X509StoreRef,
    untrusted: &[X509],
) -> Result<(), ErrorStack> {
    // SAFETY: a fresh context is owned by the wrapper. TS_REQ_to_TS_VERIFY_CTX
    // first cleans the given context, then copies the imprint, nonce and
    // policy from `req` into it and returns it (or NULL on failure); the
    // trust material is therefore set only after it.
    let ctx = unsafe {
        let ctx = TsVerifyCtx::from_raw(raw::TS_VERIFY_CTX_new())?;
        if raw::TS_REQ_to_TS_VERIFY_CTX(req.as_ptr(), ctx.as_ptr()).is_null() {
            return Err(ErrorStack::get());
        }
        raw::TS_VERIFY_CTX_add_flags(ctx.as_ptr(), raw::TS_VFY_SIGNATURE);
        ctx
    };
    set_trust(&ctx, store, untrusted)?;
    // SAFETY: `ctx` and `resp` are valid; the response is only read.
    if unsafe { raw::TS_RESP_verify_response(ctx.as_ptr(), resp.as_ptr()) } == 1 {
        Ok(())
    } else {
        Err(ErrorStack::get())
    }
}

/// Verifies a token's signature, certificate chain (purpose
/// timeStampSigning) and ESS signing-certificate attribute, plus the TSTInfo
/// version. Imprint and policy are left to the caller.
pub(crate) fn ts_verify_token_signature(
    token: &Pkcs7Ref,
    store: &X509StoreRef,
    untrusted: &[X509],
) -> Result<(), ErrorStack> {
    // SAFETY: a fresh context is owned by the wrapper.
    let ctx = TsVerifyCtx::from_raw(unsafe { raw::TS_VERIFY_CTX_new() })?;
    set_trust(&ctx, store, untrusted)?;
    // SAFETY: `ctx` and `token` are valid for the call; the token is only read.
    unsafe {
        raw::TS_VERIFY_CTX_set_flags(ctx.as_ptr(), raw::TS_VFY_SIGNATURE | raw::TS_VFY_VERSION);
        if raw::TS_RESP_verify_token(ctx.as_ptr(), token.as_ptr()) == 1 {
            Ok(())
        } else {
            Err(ErrorStack::get())
        }
    }
}
