//! Who may call on the client port (`docs/design.md`, "Who may call";
//! `docs/node.md`, "Connection types" and "Host check"):
//!
//! - [`check_host`]: `Host` and `:authority` must name this node (a
//!   configured `[client] hosts` name, `localhost`, a loopback address or
//!   an address the client port listens on), so that a web page using DNS
//!   rebinding reaches nothing; refused with `421 ndxp.bad_request`.
//! - [`authorize`]: the connection must satisfy the connection type of the
//!   subsystem named in `NDXP-Client`; refused with `401
//!   ndxp.unauthorized`.

use std::net::{IpAddr, SocketAddr};

use chrono::{DateTime, Utc};
use http::header::HOST;
use ndxp_core::{ErrorCode, Problem, SubsystemId};

use crate::config::ClientSection;
use crate::local::{ConnectionType, LocalConfig};

/// Status of a request whose `Host` does not name this node (RFC 9110
/// §15.5.20, Misdirected Request).
pub(crate) const MISDIRECTED: u16 = 421;

/// What the client port knows about the connection a request came on.
#[derive(Debug, Clone)]
pub(crate) struct CallerConnection {
    /// The caller's address.
    pub(crate) remote: SocketAddr,
    /// Whether the connection is TLS.
    pub(crate) tls: bool,
    /// SHA-256 of the client certificate presented in the TLS handshake.
    pub(crate) cert_sha256: Option<String>,
}

/// Whether `ip` is a loopback address (IPv4-mapped IPv6 included).
pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Checks that `conn` satisfies the connection type of `client` at `now`;
/// the error says what is missing.
pub(crate) fn authorize(
    local: &LocalConfig,
    client: &SubsystemId,
    conn: &CallerConnection,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let (kind, certs) = local.connection(client);
    match kind {
        ConnectionType::Http => {
            if is_loopback(conn.remote.ip()) {
                Ok(())
            } else {
                Err(format!(
                    "{client} has connection type http, accepted only from a loopback address, and this call comes from {}; the node's operator can set https or https-cert for it",
                    conn.remote.ip()
                ))
            }
        }
        ConnectionType::Https | ConnectionType::HttpsCert if !conn.tls => Err(format!(
            "{client} has connection type {kind}: call the node's HTTPS client port, not plain HTTP"
        )),
        ConnectionType::Https => Ok(()),
        ConnectionType::HttpsCert => {
            let Some(fp) = &conn.cert_sha256 else {
                return Err(format!(
                    "{client} has connection type https-cert: present a client certificate registered for it in the TLS handshake"
                ));
            };
            match certs.iter().find(|c| &c.sha256 == fp) {
                None => Err(format!(
                    "the client certificate {fp} is not registered for {client}; the node's operator registers it with `ndxp-node subsystems add-cert`"
                )),
                Some(c) if c.not_after < now => Err(format!(
                    "the client certificate {fp} of {client} expired at {}; register its successor",
                    c.not_after.to_rfc3339()
                )),
                Some(_) => Ok(()),
            }
        }
    }
}

/// The refusal of [`authorize`] as a problem.
pub(crate) fn unauthorized(detail: String) -> Problem {
    Problem::new(ErrorCode::Unauthorized, detail)
}

/// Checks `Host` and the URI's authority (HTTP/2 `:authority`, or an
/// absolute-form target) of a client-port request: each one present must
/// name this node, and at least one must be present.
pub(crate) fn check_host(
    client: &ClientSection,
    parts: &http::request::Parts,
) -> Result<(), Problem> {
    let refuse =
        |detail: String| Err(Problem::new(ErrorCode::BadRequest, detail).with_status(MISDIRECTED));
    let mut named = Vec::new();
    for v in parts.headers.get_all(HOST) {
        match v.to_str() {
            Ok(s) => named.push(s.to_owned()),
            Err(_) => return refuse("the Host header is not visible ASCII".into()),
        }
    }
    if let Some(a) = parts.uri.authority() {
        named.push(a.as_str().to_owned());
    }
    if named.is_empty() {
        return refuse("the request names no host: send Host (or :authority)".into());
    }
    for h in &named {
        if !host_allowed(client, h) {
            return refuse(format!(
                "{h:?} is not a name of this node's client port; call it by a name in its [client] hosts setting, localhost or its address"
            ));
        }
    }
    Ok(())
}

/// Whether `authority` (`host[:port]`, IPv6 in brackets) names this node.
pub(crate) fn host_allowed(client: &ClientSection, authority: &str) -> bool {
    let Some(host) = host_of(authority) else {
        return false;
    };
    if let Some(ip) = parse_ip(&host) {
        return is_loopback(ip)
            || [Some(client.listen), client.tls_listen]
                .into_iter()
                .flatten()
                .any(|l| !l.ip().is_unspecified() && l.ip().to_canonical() == ip.to_canonical());
    }
    host == "localhost" || client.hosts.iter().any(|n| n.eq_ignore_ascii_case(&host))
}

/// The host of `host[:port]`, lowercase, without a trailing dot; `None`
/// when the port is not a number or the text is empty.
fn host_of(authority: &str) -> Option<String> {
    let a = authority.trim();
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        (format!("[{h}]"), after.strip_prefix(':'))
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (a.to_owned(), None),
        }
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

fn parse_ip(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse().ok(),
        None => host.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(remote: &str, tls: bool) -> CallerConnection {
        CallerConnection {
            remote: remote.parse().expect("addr"),
            tls,
            cert_sha256: None,
        }
    }

    fn local_with(kind: ConnectionType) -> (LocalConfig, SubsystemId) {
        let member = "VN/GOV/000.00.00.G22".parse().expect("member");
        let sub: SubsystemId = "VN/GOV/000.00.00.G22/QLHT".parse().expect("sub");
        let mut local = LocalConfig::default();
        local.add_subsystem(&member, sub.clone()).expect("add");
        local.set_connection(&sub, kind).expect("set");
        (local, sub)
    }

    #[test]
    fn http_is_accepted_from_loopback_only() {
        let (local, sub) = local_with(ConnectionType::Http);
        let now = Utc::now();
        for ok in [
            "127.0.0.1:5000",
            "127.8.9.10:5000",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:5000",
        ] {
            assert!(
                authorize(&local, &sub, &conn(ok, false), now).is_ok(),
                "{ok}"
            );
            assert!(
                authorize(&local, &sub, &conn(ok, true), now).is_ok(),
                "{ok} over TLS"
            );
        }
        for bad in [
            "10.0.0.7:5000",
            "192.168.1.2:5000",
            "[2001:db8::1]:5000",
            "[::ffff:10.0.0.7]:5000",
        ] {
            let e = authorize(&local, &sub, &conn(bad, true), now).expect_err(bad);
            assert!(e.contains("loopback"), "{e}");
        }
    }

    #[test]
    fn https_types_refuse_plain_http_even_from_loopback() {
        for kind in [ConnectionType::Https, ConnectionType::HttpsCert] {
            let (local, sub) = local_with(kind);
            let e = authorize(&local, &sub, &conn("127.0.0.1:1", false), Utc::now())
                .expect_err("plain");
            assert!(e.contains("HTTPS client port"), "{e}");
        }
    }

    #[test]
    fn host_names() {
        let client = ClientSection {
            hosts: vec!["Node.G22.example.vn".into()],
            tls_listen: Some("10.1.2.3:8443".parse().expect("addr")),
            ..ClientSection::default()
        };
        for ok in [
            "127.0.0.1:8201",
            "localhost",
            "LOCALHOST:8201",
            "[::1]:8201",
            "node.g22.example.vn:8443",
            "node.g22.example.vn.",
            "10.1.2.3:8443",
        ] {
            assert!(host_allowed(&client, ok), "{ok}");
        }
        for bad in [
            "attacker.example",
            "attacker.example:8201",
            "10.1.2.4",
            "node.g22.example.vn.attacker.example",
            "",
            ":8201",
            "localhost:x",
            "[::1",
        ] {
            assert!(!host_allowed(&client, bad), "{bad}");
        }
    }
}
