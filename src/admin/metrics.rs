//! Metrics in the Prometheus text format 0.0.4: counters the reactor keeps ([`IoStats`]),
//! the cluster's own ([`crate::cluster::ClusterStats`]), rendered on request.

use crate::cluster::Cluster;
use std::fmt::Write as _;

/// A histogram with fixed bucket bounds (seconds), cumulative when rendered.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// Bucket bounds for fsync latency (seconds).
pub const FSYNC_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Bucket bounds for the keys written in one store transaction (a count, not seconds).
pub const TXN_OPS_BUCKETS: &[f64] = &[1.0, 4.0, 16.0, 64.0, 128.0, 256.0, 1024.0, 4096.0, 16384.0];
/// Bucket bounds for one poll-loop turn (seconds).
pub const LOOP_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 1.0,
];

impl Histogram {
    /// An empty histogram over `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    /// Records one observation.
    pub fn observe(&mut self, seconds: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| seconds <= b) {
            self.counts[i] += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c;
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

/// What the reactor counts: bytes, frames, journal syncs, loop turns.
#[derive(Debug, Clone)]
pub struct IoStats {
    /// Frames received on the node port.
    pub frames_in: u64,
    /// Frames sent on the node port.
    pub frames_out: u64,
    /// Bytes received on the node port.
    pub bytes_in: u64,
    /// Bytes written on the node port.
    pub bytes_out: u64,
    /// Journal syncs that succeeded.
    pub fsyncs: u64,
    /// Journal writes or syncs that failed.
    pub fsync_failures: u64,
    /// Journal batches that waited for the commit spacing (records of a stream gathered).
    pub batches_spaced: u64,
    /// Latency of successful journal write + sync.
    pub fsync_seconds: Histogram,
    /// Duration of a poll-loop turn (events handled, not the wait).
    pub loop_seconds: Histogram,
    /// Latency of each store transaction (one per batch locally; a failover group's batch
    /// may take several).
    pub txn_seconds: Histogram,
    /// Keys written per store transaction.
    pub txn_ops: Histogram,
    /// Admin requests answered.
    pub admin_requests: u64,
    /// Requests for the players' server list answered.
    pub public_requests: u64,
    /// Renders of the players' server lists (each serves many requests).
    pub public_renders: u64,
    /// SIGHUP reloads applied.
    pub reloads_applied: u64,
    /// SIGHUP reloads rejected (bad file; the running configuration stayed).
    pub reloads_rejected: u64,
}

impl Default for IoStats {
    fn default() -> Self {
        IoStats {
            frames_in: 0,
            frames_out: 0,
            bytes_in: 0,
            bytes_out: 0,
            fsyncs: 0,
            fsync_failures: 0,
            batches_spaced: 0,
            fsync_seconds: Histogram::new(FSYNC_BUCKETS),
            loop_seconds: Histogram::new(LOOP_BUCKETS),
            txn_seconds: Histogram::new(FSYNC_BUCKETS),
            txn_ops: Histogram::new(TXN_OPS_BUCKETS),
            admin_requests: 0,
            public_requests: 0,
            public_renders: 0,
            reloads_applied: 0,
            reloads_rejected: 0,
        }
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// Escapes a label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric.
pub fn render(cluster: &Cluster, io: &IoStats, out: &mut String) {
    let stats = cluster.stats();
    gauge(
        out,
        "login_node_connections_open",
        "Open TCP connections on the node port.",
        cluster.open_connections() as u64,
    );
    let _ = writeln!(
        out,
        "# HELP login_node_nodes_online Nodes online (INFO received), by type.\n# TYPE login_node_nodes_online gauge\nlogin_node_nodes_online{{type=\"game\"}} {}\nlogin_node_nodes_online{{type=\"cross\"}} {}",
        stats.online_game, stats.online_cross
    );
    let _ = writeln!(
        out,
        "# HELP login_node_auth_results_total AUTH_RESULT frames sent, by code.\n# TYPE login_node_auth_results_total counter"
    );
    for (code, n) in stats.auth_results.iter().enumerate() {
        let _ = writeln!(out, "login_node_auth_results_total{{code=\"{code}\"}} {n}");
    }
    counter(
        out,
        "login_node_heartbeat_timeouts_total",
        "Nodes dropped for heartbeat timeout (KICK 2).",
        stats.heartbeat_timeouts,
    );
    counter(
        out,
        "login_node_handler_panics_total",
        "Embedder handler calls that panicked (caught; the node kept serving).",
        stats.handler_panics,
    );
    counter(
        out,
        "login_node_connections_throttled_total",
        "Connections closed unanswered: their address or claimed identity failed AUTH too often.",
        stats.connections_throttled,
    );
    counter(
        out,
        "login_node_addresses_blocked_total",
        "Times an address reached its failure budget (auth_fail_limit x 50).",
        stats.addresses_blocked,
    );
    counter(
        out,
        "login_node_identities_blocked_total",
        "Times an identity (address, node type, node id) reached auth_fail_limit.",
        stats.identities_blocked,
    );
    counter(
        out,
        "login_node_protocol_errors_total",
        "Connections closed for a protocol error (KICK 5).",
        stats.protocol_errors,
    );
    counter(
        out,
        "login_node_frames_received_total",
        "Frames received on the node port.",
        io.frames_in,
    );
    counter(
        out,
        "login_node_frames_sent_total",
        "Frames queued for sending on the node port.",
        io.frames_out,
    );
    counter(
        out,
        "login_node_bytes_received_total",
        "Bytes received on the node port.",
        io.bytes_in,
    );
    counter(
        out,
        "login_node_bytes_sent_total",
        "Bytes written on the node port.",
        io.bytes_out,
    );
    counter(
        out,
        "login_node_assignments_total",
        "Cross assignments made (new, adopted or moved).",
        stats.assignments,
    );
    let _ = writeln!(
        out,
        "# HELP login_node_waiting_game_nodes Game nodes waiting for a cross slot, by platform.\n# TYPE login_node_waiting_game_nodes gauge"
    );
    let alloc = cluster.allocator();
    for plat in alloc.platform_ids() {
        let waiting = alloc.waiting(plat).count();
        if waiting > 0 {
            let _ = writeln!(
                out,
                "login_node_waiting_game_nodes{{plat=\"{}\"}} {waiting}",
                label(alloc.platforms.name(plat))
            );
        }
    }
    counter(
        out,
        "login_node_journal_fsyncs_total",
        "Journal group commits made durable.",
        io.fsyncs,
    );
    counter(
        out,
        "login_node_journal_batches_spaced_total",
        "Journal batches held back by the commit spacing to gather more of a stream of changes.",
        io.batches_spaced,
    );
    counter(
        out,
        "login_node_journal_failures_total",
        "Journal writes or syncs that failed.",
        io.fsync_failures,
    );
    gauge(
        out,
        "login_node_state_writable",
        "1 while the state directory accepts writes.",
        cluster.is_writable() as u64,
    );
    let _ = writeln!(
        out,
        "# HELP login_node_role 1 for the role this login node has (a failover group's active member or a standby, or single).\n# TYPE login_node_role gauge"
    );
    for role in ["single", "active", "standby"] {
        let on = (cluster.role().name() == role) as u64;
        let _ = writeln!(out, "login_node_role{{role=\"{role}\"}} {on}");
    }
    gauge(
        out,
        "login_node_held_bytes",
        "Bytes of frames held until the state behind them is durable.",
        cluster.held_bytes() as u64,
    );
    io.fsync_seconds.render(
        "login_node_journal_fsync_seconds",
        "Latency of one batch made durable (audit lines, then one database transaction).",
        out,
    );
    io.txn_seconds.render(
        "login_node_store_txn_seconds",
        "Latency of one store transaction (the local database: one per batch; etcd: a batch larger than --etcd-max-txn-ops takes several, written in order).",
        out,
    );
    io.txn_ops.render(
        "login_node_store_txn_ops",
        "Keys put or deleted by one store transaction.",
        out,
    );
    io.loop_seconds.render(
        "login_node_loop_turn_seconds",
        "Time spent handling one poll-loop turn (excluding the wait).",
        out,
    );
    let wl = cluster.whitelist();
    gauge(
        out,
        "login_node_whitelist_entries",
        "Whitelist entries.",
        wl.entries.len() as u64,
    );
    gauge(
        out,
        "login_node_whitelist_version",
        "Whitelist version.",
        wl.version as u64,
    );
    counter(
        out,
        "login_node_admin_requests_total",
        "Admin API requests answered.",
        io.admin_requests,
    );
    counter(
        out,
        "login_node_public_requests_total",
        "Requests for the players' server list answered.",
        io.public_requests,
    );
    counter(
        out,
        "login_node_public_renders_total",
        "Players' server lists rendered (each is served until it changes).",
        io.public_renders,
    );
    let _ = writeln!(
        out,
        "# HELP login_node_config_reloads_total SIGHUP reloads, by result.\n# TYPE login_node_config_reloads_total counter\nlogin_node_config_reloads_total{{result=\"applied\"}} {}\nlogin_node_config_reloads_total{{result=\"rejected\"}} {}",
        io.reloads_applied, io.reloads_rejected
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        let mut out = String::new();
        h.render("x", "help", &mut out);
        assert!(out.contains("x_bucket{le=\"0.1\"} 1\n"));
        assert!(out.contains("x_bucket{le=\"1\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_count 3\n"));
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
