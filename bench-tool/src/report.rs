//! What a run prints: the JSON report (one object, `--json`) and the human summary made from
//! it.

use crate::http_load;
use crate::stats::Stats;
use serde_json::{json, Value};

pub fn http_json(h: &http_load::HttpStats) -> Value {
    let secs = h.secs.max(1e-9);
    json!({
        "requests": h.requests,
        "requests_per_sec": h.requests as f64 / secs,
        "status_200": h.ok,
        "status_304": h.not_modified,
        "status_other": h.other,
        "body_mib_per_sec": h.body_bytes as f64 / secs / (1 << 20) as f64,
        "latency": h.latency.summary_us(),
        "behind": h.behind,
        "dead_connections": h.errors,
        "secs": h.secs,
    })
}

pub fn json(mode: &str, s: &Stats) -> Value {
    json!({
        "mode": mode,
        "ok": s.failure_count() == 0,
        "handshakes": s.handshakes,
        "handshakes_per_sec": if s.ramp_secs > 0.0 { s.handshakes as f64 / s.ramp_secs } else { 0.0 },
        "handshake_latency": s.handshake.summary_us(),
        "acks": s.acks,
        "acks_per_sec": s.acks as f64 / s.window_secs.max(1e-9),
        "ack_rtt": s.rtt.summary_us(),
        "sessions": s.sessions,
        "sessions_per_sec": s.sessions as f64 / s.window_secs.max(1e-9),
        "session_latency": s.session.summary_us(),
        "online_at_end": s.online_at_end,
        "failures": s.failures,
        "server_cpu_us_per_handshake": s.server_cpu_us_handshakes,
        "server_cpu_us_per_op": s.server_cpu_us_window,
        "server_rss_growth_bytes": s.server_rss_growth,
        "server_samples": {
            "ramp": s.server_samples.ramp.map(|((c0, r0), (c1, r1))| json!([[c0, r0], [c1, r1]])),
            "window": s.server_samples.window.map(|(c0, c1)| json!([c0, c1])),
        },
        "hist": {"handshake": s.handshake.to_json(), "rtt": s.rtt.to_json(), "session": s.session.to_json()},
        "ramp_secs": s.ramp_secs,
        "window_secs": s.window_secs,
    })
}

pub fn print_summary(mode: &str, r: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    println!(
        "login-node-bench {mode}: {}",
        if r["ok"] == true { "ok" } else { "FAILURES" }
    );
    if r["handshakes"].as_u64().unwrap_or(0) > 0 {
        let h = &r["handshake_latency"];
        println!(
            "  handshakes  {} at {:.0}/s; latency p50 {:.0} us, p99 {:.0} us, p999 {:.0} us",
            r["handshakes"],
            f(&r["handshakes_per_sec"]),
            f(&h["p50_us"]),
            f(&h["p99_us"]),
            f(&h["p999_us"])
        );
    }
    if r["acks"].as_u64().unwrap_or(0) > 0 {
        let h = &r["ack_rtt"];
        println!(
            "  heartbeats  {} ACKs at {:.0}/s; RTT p50 {:.0} us, p99 {:.0} us, p999 {:.0} us, max {:.0} us",
            r["acks"], f(&r["acks_per_sec"]), f(&h["p50_us"]), f(&h["p99_us"]), f(&h["p999_us"]), f(&h["max_us"])
        );
    }
    if r["sessions"].as_u64().unwrap_or(0) > 0 {
        let h = &r["session_latency"];
        println!(
            "  churn       {} sessions at {:.0}/s; p50 {:.0} us, p99 {:.0} us",
            r["sessions"],
            f(&r["sessions_per_sec"]),
            f(&h["p50_us"]),
            f(&h["p99_us"])
        );
    }
    if let Some(cpu) = r["server_cpu_us_per_handshake"].as_f64() {
        println!("  server      {cpu:.1} CPU-us per handshake");
    }
    if let Some(cpu) = r["server_cpu_us_per_op"].as_f64() {
        println!("  server      {cpu:.2} CPU-us per operation in the window");
    }
    if let (Some(rss), Some(n)) = (
        r["server_rss_growth_bytes"].as_i64(),
        r["handshakes"].as_u64(),
    ) {
        if n > 0 {
            println!(
                "  server      RSS grew {} KiB: {:.0} bytes per node",
                rss / 1024,
                rss as f64 / n as f64
            );
        }
    }
    if let Some(h) = r.get("http") {
        let l = &h["latency"];
        println!(
            "  http        {} requests at {:.0}/s ({} x 200, {} x 304, {} other; {:.0} MiB/s of body); latency p50 {:.0} us, p99 {:.0} us, p999 {:.0} us; {} behind the rate",
            h["requests"], f(&h["requests_per_sec"]), h["status_200"], h["status_304"],
            h["status_other"], f(&h["body_mib_per_sec"]), f(&l["p50_us"]), f(&l["p99_us"]),
            f(&l["p999_us"]), h["behind"]
        );
    }
    println!("  online at end {}", r["online_at_end"]);
    match r["failures"].as_object() {
        Some(f) if !f.is_empty() => {
            for (k, n) in f {
                println!("  failure     {n} x {k}");
            }
        }
        _ => println!("  failures    none"),
    }
}
