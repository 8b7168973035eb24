//! The demo's ports: one base that `--port-base` moves, and the check that
//! none of them is taken.

use anyhow::{bail, ensure, Result};

/// The first of the demo's ports by default, as in the README's table.
pub(crate) const DEFAULT_PORT_BASE: u16 = 8100;
/// The demo's ports lie in `base ..= base + PORT_SPAN` (the sample backend
/// is the last).
const PORT_SPAN: u16 = 300;
/// How many nodes the demo runs (provider and consumer).
const NODE_COUNT: usize = 2;

/// Every port the demo listens on, as offsets from one base so that
/// `--port-base` moves them together; with the default base 8100 they are
/// the README's: 8100, 8101, 8190, 8201-8204, 8211-8214, 8300, 8400.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ports {
    base: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            base: DEFAULT_PORT_BASE,
        }
    }
}

impl Ports {
    /// The ports from `base`; fails when the highest would not be a port.
    pub(crate) fn new(base: u16) -> Result<Self> {
        ensure!(
            (1024..=u16::MAX - PORT_SPAN).contains(&base),
            "--port-base must be between 1024 and {} (the demo uses the {} ports from it), not {base}",
            u16::MAX - PORT_SPAN,
            PORT_SPAN + 1
        );
        Ok(Ports { base })
    }
    fn at(self, offset: u16) -> u16 {
        self.base + offset
    }
    /// The management API (8100).
    pub(crate) fn management(self) -> u16 {
        self.at(0)
    }
    /// The management role's admin port (8101).
    pub(crate) fn management_admin(self) -> u16 {
        self.at(1)
    }
    /// The PKI service: OCSP and TSA (8190).
    pub(crate) fn pki(self) -> u16 {
        self.at(90)
    }
    /// The `i`-th node's client port (8201, 8211).
    pub(crate) fn client(self, i: usize) -> u16 {
        self.node(i, 1)
    }
    /// The `i`-th node's peer port (8202, 8212).
    pub(crate) fn peer(self, i: usize) -> u16 {
        self.node(i, 2)
    }
    /// The `i`-th node's admin port (8203, 8213).
    pub(crate) fn admin(self, i: usize) -> u16 {
        self.node(i, 3)
    }
    /// The `i`-th node's HTTPS client port (8204, 8214).
    pub(crate) fn client_tls(self, i: usize) -> u16 {
        self.node(i, 4)
    }
    fn node(self, i: usize, port: u16) -> u16 {
        // i < NODE_COUNT, so the offset stays below PORT_SPAN.
        self.at(100 + 10 * i as u16 + port)
    }
    /// The central gateway role (8300).
    pub(crate) fn gateway(self) -> u16 {
        self.at(200)
    }
    /// The sample backend (8400).
    pub(crate) fn backend(self) -> u16 {
        self.at(PORT_SPAN)
    }
    /// Every port with what listens there, in the order they are started.
    pub(crate) fn all(self) -> Vec<(u16, String)> {
        let mut all = vec![
            (self.pki(), "the PKI service (OCSP, TSA)".to_string()),
            (self.management(), "the management API".into()),
            (self.management_admin(), "the management admin port".into()),
            (self.gateway(), "the central gateway".into()),
            (self.backend(), "the sample backend".into()),
        ];
        for i in 0..NODE_COUNT {
            all.push((self.client(i), format!("node {i}'s client port")));
            all.push((self.peer(i), format!("node {i}'s peer port")));
            all.push((self.admin(i), format!("node {i}'s admin port")));
            all.push((self.client_tls(i), format!("node {i}'s HTTPS client port")));
        }
        all
    }
}

/// The base of the running demo's ports. A process-wide value rather than a
/// parameter because the flows in `exchange.rs`/`central.rs` reach for
/// their addresses in many places; `start` sets it once, before anything
/// listens.
static PORT_BASE: std::sync::atomic::AtomicU16 =
    std::sync::atomic::AtomicU16::new(DEFAULT_PORT_BASE);

/// Makes `ports` the running demo's ports.
pub(super) fn set_ports(ports: Ports) {
    PORT_BASE.store(ports.base, std::sync::atomic::Ordering::Relaxed);
}

/// The ports of the demo being run.
pub(crate) fn ports() -> Ports {
    Ports {
        base: PORT_BASE.load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// `http://127.0.0.1:PORT`.
pub(crate) fn local_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// The management API's base URL.
pub(crate) fn management_url() -> String {
    local_url(ports().management())
}

/// Fails, naming the port, when something already listens on one of the
/// demo's ports: most often another demo, whose services would otherwise
/// answer this one's requests with the wrong keys.
pub(crate) fn check_ports_free(ports: Ports) -> Result<()> {
    for (port, what) in ports.all() {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            bail!(
                "port {port} ({what}) is already in use ({e}). Another demo is probably running: \
                 stop it (Ctrl-C in its terminal), or run this one on other ports with \
                 --port-base N (now {}; the demo uses ports N to N+{PORT_SPAN}).",
                ports.base
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_ports_are_the_readmes() {
        let mut ports: Vec<u16> = Ports::default().all().into_iter().map(|(p, _)| p).collect();
        ports.sort_unstable();
        assert_eq!(
            ports,
            [8100, 8101, 8190, 8201, 8202, 8203, 8204, 8211, 8212, 8213, 8214, 8300, 8400]
        );
    }

    #[test]
    fn port_base_moves_every_port_by_the_same_amount() {
        let default = Ports::default().all();
        let moved = Ports::new(9100).unwrap().all();
        assert_eq!(default.len(), moved.len());
        for ((d, what_d), (m, what_m)) in default.iter().zip(&moved) {
            assert_eq!(what_d, what_m);
            assert_eq!(*m, d + 1000, "{what_d}");
        }
        let highest = Ports::new(u16::MAX - PORT_SPAN).unwrap();
        assert_eq!(highest.backend(), u16::MAX);
        assert!(Ports::new(u16::MAX - PORT_SPAN + 1).is_err());
        assert!(Ports::new(80).is_err());
    }

    #[test]
    fn the_port_check_names_a_taken_port() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        // The management API is at the base itself.
        let ports = Ports::new(port).unwrap();
        let err = check_ports_free(ports).unwrap_err().to_string();
        assert!(
            err.contains(&format!("port {port} (the management API)")),
            "{err}"
        );
        assert!(err.contains("--port-base"), "{err}");
        drop(taken);
    }
}
