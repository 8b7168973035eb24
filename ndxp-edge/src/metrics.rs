//! The serve loops' connection counts as Prometheus metrics, for the
//! registries of `ndxp-node` and `ndxp-gateway`:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `{prefix}_connections_open` | gauge | `listener`: connections open now |
//! | `{prefix}_connections_refused_total` | counter | `listener`: connections closed at once over `[edge] max_connections` or `max_connections_per_ip` |
//! | `{prefix}_handshakes_failed_total` | counter | `listener`: connections whose TLS handshake (or the checks after it) failed or timed out |

use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};

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
