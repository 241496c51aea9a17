//! What a run measures ([`Stats`]) and the server samples behind its server figures, read from
//! /proc. Apart from the engine because `main` merges worker processes' stats without one.

use crate::hist::Hist;
use std::collections::BTreeMap;

/// Server (CPU seconds, RSS bytes) samples: at the ramp's start and end, and CPU seconds at
/// the window's start and end.
#[derive(Default, Clone, Copy, Debug)]
pub struct ServerSamples {
    pub ramp: Option<((f64, i64), (f64, i64))>,
    pub window: Option<(f64, f64)>,
}

/// Everything measured.
#[derive(Default)]
pub struct Stats {
    pub handshake: Hist,
    pub handshakes: u64,
    pub ramp_secs: f64,
    pub rtt: Hist,
    pub acks: u64,
    pub window_secs: f64,
    pub session: Hist,
    pub sessions: u64,
    pub failures: BTreeMap<String, u64>,
    pub server_cpu_us_handshakes: Option<f64>,
    pub server_cpu_us_window: Option<f64>,
    pub server_rss_growth: Option<i64>,
    /// The raw server samples behind those figures, so worker processes' can be merged.
    pub server_samples: ServerSamples,
    pub online_at_end: u64,
}

impl Stats {
    pub(crate) fn fail(&mut self, kind: impl Into<String>) {
        *self.failures.entry(kind.into()).or_default() += 1;
    }

    pub fn failure_count(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// CPU seconds and RSS bytes of a process, from /proc.
pub fn sample_process(pid: u32) -> Option<(f64, i64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let cpu = (f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: i64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((cpu, rss_kb * 1024))
}
