//! What the `ndxp-gateway pki ...` commands decide beyond the CA itself
//! (`ndxp_sign::ca`): the identity a certificate is issued to, and the
//! description of an issued certificate.

use std::net::IpAddr;
use std::path::Path;

use ndxp_core::{MemberId, NodeName};
use ndxp_sign::cert::{self, CertError, Identity, Profile};
use ndxp_sign::openssl::x509::X509Ref;

/// The identity a certificate of `profile` is for: a node of `member` for
/// `auth` (TLS), the member itself for `sign`.
///
/// # Errors
/// The sentence to show when `node` does not fit the profile (`auth`
/// needs it, `sign` takes none).
pub fn requested_identity(
    profile: Profile,
    member: MemberId,
    node: Option<NodeName>,
) -> Result<Identity, &'static str> {
    match (profile, node) {
        (Profile::Auth, Some(node)) => Ok(Identity::Node(member, node)),
        (Profile::Sign, None) => Ok(Identity::Member(member)),
        (Profile::Auth, None) => {
            Err("--profile auth needs --node: the node the TLS certificate is for")
        }
        (Profile::Sign, Some(_)) => Err("--profile sign is a member's certificate: drop --node"),
    }
}

/// What `pki issue` prints: the serial, the subject, the names, the
/// profile and the validity of the certificate it signed and wrote to
/// `out`.
///
/// # Errors
/// [`CertError`] when the certificate's serial or times cannot be read.
pub fn issued_text(cert: &X509Ref, profile: Profile, out: &Path) -> Result<String, CertError> {
    let mut names = Vec::new();
    for n in cert.subject_alt_names().iter().flatten() {
        if let Some(u) = n.uri() {
            names.push(format!("URI:{u}"));
        } else if let Some(d) = n.dnsname() {
            names.push(format!("DNS:{d}"));
        } else if let Some(ip) = n.ipaddress() {
            let ip = match ip.len() {
                4 => <[u8; 4]>::try_from(ip).map(IpAddr::from).ok(),
                16 => <[u8; 16]>::try_from(ip).map(IpAddr::from).ok(),
                _ => None,
            };
            names.push(ip.map_or_else(|| "IP:?".into(), |ip| format!("IP:{ip}")));
        }
    }
    let time =
        |t| cert::asn1_to_utc(t).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    Ok(format!(
        "issued {profile} certificate serial {} to {}\n  subject:  {}\n  names:    {}\n  \
         profile:  {}\n  valid:    {} to {}\n",
        cert::cert_serial_hex(cert)?,
        out.display(),
        cert::subject_text(cert.subject_name()),
        names.join(", "),
        match profile {
            Profile::Auth => "auth (TLS server and client authentication of a node)",
            Profile::Sign => "sign (message signing of a member)",
        },
        time(cert.not_before())?,
        time(cert.not_after())?,
    ))
}
