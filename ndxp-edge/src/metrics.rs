//! What every NDXP process's `/metrics` shares: the serve loops'
//! connection counts, the build information, the exposition's content type,
//! and bounded label values ([`LabelValues`]). Every binary uses the
//! `prometheus-client` registry; the catalogue of every metric is in
//! `docs/monitoring.md`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `ndxp_build_info` | gauge (always 1) | `version`, `commit` (`NDXP_COMMIT` at build time, or `unknown`), `rustc` |
//! | `{prefix}_connections_open` | gauge | `listener`: connections open now |
//! | `{prefix}_connections_refused_total` | counter | `listener`: connections closed at once over `[edge] max_connections` or `max_connections_per_ip` |
//! | `{prefix}_handshakes_failed_total` | counter | `listener`: connections whose TLS handshake (or the checks after it) failed or timed out |

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::serve::EdgeStats;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

/// The connection metrics of a process's listeners.
#[derive(Debug)]
pub struct ConnectionMetrics {
    open: Family<ListenerLabels, Gauge>,
    refused: Family<ListenerLabels, Counter>,
    failed: Family<ListenerLabels, Counter>,
    listeners: Mutex<Vec<(&'static str, EdgeStats)>>,
}

impl ConnectionMetrics {
    /// Registers the metrics in `registry`, named `{prefix}_connections_open`
    /// and so on (e.g. `prefix` `ndxp_node`).
    pub fn register(registry: &mut Registry, prefix: &str) -> Self {
        let open = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            format!("{prefix}_connections_open"),
            "Connections open now, by listener",
            open.clone(),
        );
        let refused = Family::<ListenerLabels, Counter>::default();
        registry.register(
            format!("{prefix}_connections_refused"),
            "Connections closed at once because the listener's [edge] connection limit, in all or per address, was reached",
            refused.clone(),
        );
        let failed = Family::<ListenerLabels, Counter>::default();
        registry.register(
            format!("{prefix}_handshakes_failed"),
            "Connections whose TLS handshake, or the checks after it, failed or timed out",
            failed.clone(),
        );
        Self {
            open,
            refused,
            failed,
            listeners: Mutex::new(Vec::new()),
        }
    }

    /// Reports the serve loop of `listener` (e.g. `"client"`) from now on.
    pub fn watch(&self, listener: &'static str, stats: EdgeStats) {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((listener, stats));
    }

    /// Copies the listeners' current counts into the metrics; call it
    /// before encoding the registry. (The serve loops keep the counts; the
    /// counters here mirror them.)
    pub fn refresh(&self) {
        for (listener, stats) in self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let labels = ListenerLabels { listener };
            self.open
                .get_or_create(&labels)
                .set(i64::try_from(stats.open_connections()).unwrap_or(i64::MAX));
            self.refused
                .get_or_create(&labels)
                .inner()
                .store(stats.refused_connections(), Ordering::Relaxed);
            self.failed
                .get_or_create(&labels)
                .inner()
                .store(stats.failed_handshakes(), Ordering::Relaxed);
        }
    }
}

/// The `Content-Type` of a `/metrics` answer: the registries encode
/// OpenMetrics text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The version of the NDXP crates.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit built, from `NDXP_COMMIT` at build time (set by the
/// packages, `cargo xtask package`), or `unknown`.
pub const COMMIT: &str = match option_env!("NDXP_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

/// The compiler that built the crates (`rustc --version`, from the build
/// script), or `unknown`.
pub const RUSTC: &str = match option_env!("NDXP_RUSTC") {
    Some(c) => c,
    None => "unknown",
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
    rustc: &'static str,
}

/// Registers `ndxp_build_info{version,commit,rustc} 1`, the same in every
/// binary, so that dashboards can tell which build answers.
pub fn register_build_info(registry: &mut Registry) {
    let info = Family::<BuildLabels, Gauge>::default();
    info.get_or_create(&BuildLabels {
        version: VERSION,
        commit: COMMIT,
        rustc: RUSTC,
    })
    .set(1);
    registry.register(
        "ndxp_build_info",
        "The running build: version, commit and compiler; always 1",
        info,
    );
}

/// Label values taken from a bounded set: the first `max` distinct
/// keys keep their own value (their `Display` text), later ones are folded
/// into [`LabelValues::OTHER`], so that no caller can grow a metric's
/// series without bound. Looking up a kept key allocates nothing (it
/// returns a shared `Arc<str>`).
#[derive(Debug)]
pub struct LabelValues<K = String> {
    max: usize,
    values: RwLock<HashMap<K, Arc<str>>>,
    other: Arc<str>,
}

impl<K: Hash + Eq> LabelValues<K> {
    /// The value of every label past the bound.
    pub const OTHER: &'static str = "other";

    /// A set that keeps at most `max` distinct keys.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            values: RwLock::new(HashMap::new()),
            other: Arc::from(Self::OTHER),
        }
    }

    /// The label for `key`: its text while the bound allows, else
    /// `other`.
    pub fn get<Q>(&self, key: &Q) -> Arc<str>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + std::fmt::Display + ?Sized,
    {
        if let Some(v) = self
            .values
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return v.clone();
        }
        let mut values = self.values.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = values.get(key) {
            return v.clone();
        }
        if values.len() >= self.max {
            return self.other.clone();
        }
        let v: Arc<str> = Arc::from(key.to_string());
        values.insert(key.to_owned(), v.clone());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_past_the_bound_are_folded_into_other() {
        let l = LabelValues::<String>::new(2);
        assert_eq!(&*l.get("a"), "a");
        assert_eq!(&*l.get("b"), "b");
        assert_eq!(&*l.get("c"), "other");
        // Kept values stay themselves.
        assert_eq!(&*l.get("a"), "a");
        assert!(Arc::ptr_eq(&l.get("b"), &l.get("b")));
    }

    #[test]
    fn build_info_is_one_with_the_version() {
        let mut r = Registry::default();
        register_build_info(&mut r);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        assert!(
            out.contains(&format!("ndxp_build_info{{version=\"{VERSION}\",commit=\"")),
            "{out}"
        );
        assert!(out.contains("\"} 1\n"), "{out}");
    }
}
