//! `--procs P`: the parent runs the cross nodes and P copies of the tool, each with its share
//! of the nodes and its own id range, then merges their JSON reports into one [`Stats`].

use crate::args::Args;
use crate::engine::{Engine, Plan};
use crate::hist::Hist;
use crate::stats::{ServerSamples, Stats};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

fn merge(into: &mut Stats, v: &Value) {
    into.handshakes += v["handshakes"].as_u64().unwrap_or(0);
    into.acks += v["acks"].as_u64().unwrap_or(0);
    into.sessions += v["sessions"].as_u64().unwrap_or(0);
    into.online_at_end += v["online_at_end"].as_u64().unwrap_or(0);
    into.ramp_secs = into.ramp_secs.max(v["ramp_secs"].as_f64().unwrap_or(0.0));
    into.window_secs = into
        .window_secs
        .max(v["window_secs"].as_f64().unwrap_or(0.0));
    into.handshake
        .merge(&Hist::from_json(&v["hist"]["handshake"]));
    into.rtt.merge(&Hist::from_json(&v["hist"]["rtt"]));
    into.session.merge(&Hist::from_json(&v["hist"]["session"]));
    if let Some(f) = v["failures"].as_object() {
        for (k, n) in f {
            *into.failures.entry(k.clone()).or_default() += n.as_u64().unwrap_or(0);
        }
    }
    merge_samples(&mut into.server_samples, &v["server_samples"]);
}

/// Worker processes sample the same server over overlapping intervals: the merged interval
/// runs from the earliest start to the latest end (never a sum of overlapping deltas).
fn merge_samples(into: &mut ServerSamples, v: &Value) {
    let f = |v: &Value| v.as_f64();
    let r = &v["ramp"];
    if let (Some(c0), Some(r0), Some(c1), Some(r1)) =
        (f(&r[0][0]), r[0][1].as_i64(), f(&r[1][0]), r[1][1].as_i64())
    {
        into.ramp = Some(match into.ramp {
            None => ((c0, r0), (c1, r1)),
            Some(((a0, b0), (a1, b1))) => ((a0.min(c0), b0.min(r0)), (a1.max(c1), b1.max(r1))),
        });
    }
    let w = &v["window"];
    if let (Some(c0), Some(c1)) = (f(&w[0]), f(&w[1])) {
        into.window = Some(match into.window {
            None => (c0, c1),
            Some((a0, a1)) => (a0.min(c0), a1.max(c1)),
        });
    }
}

/// The server figures from merged samples (what one process computes as it goes).
fn derive_server_figures(s: &mut Stats) {
    if let Some(((c0, r0), (c1, r1))) = s.server_samples.ramp {
        if s.handshakes > 0 {
            s.server_cpu_us_handshakes = Some((c1 - c0) * 1e6 / s.handshakes as f64);
        }
        s.server_rss_growth = Some(r1 - r0);
    }
    if let Some((c0, c1)) = s.server_samples.window {
        let ops = s.acks + s.sessions;
        if ops > 0 {
            s.server_cpu_us_window = Some((c1 - c0) * 1e6 / ops as f64);
        }
    }
}

/// Runs `procs` copies of this command, each with its share of the nodes and its own id
/// range, and merges their reports. Cross nodes are brought online here first and kept
/// heartbeating until the workers finish.
pub fn run_workers(a: &Args, p: &Plan, procs: usize) -> Result<Stats, String> {
    use std::cell::RefCell;
    use std::rc::Rc;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let cross_plan = Plan {
        hold_nodes: 0,
        pump_nodes: 0,
        churn_workers: 0,
        duration: Duration::ZERO,
        label: "[crosses] ".into(),
        ..p.clone()
    };
    let mut crosses = Engine::new(cross_plan).map_err(|e| e.to_string())?;
    if p.cross_nodes > 0 {
        crosses.run().map_err(|e| e.to_string())?;
    }
    const PER_WORKER: &[&str] = &[
        "procs",
        "nodes",
        "id-base",
        "workers",
        "pump-nodes",
        "cross",
    ];
    let share = |total: usize, i: usize| total / procs + usize::from(i < total % procs);
    let nodes: usize = a.num("nodes", 1000)?;
    let workers: usize = a.num("workers", if a.mode == "churn" { 100 } else { 20 })?;
    let pump_nodes: usize = a.num("pump-nodes", 100)?;
    let mut id = p.id_base as u64;
    let mut children = Vec::new();
    for i in 0..procs {
        let mut args: Vec<String> = vec![a.mode.clone()];
        for (k, v) in &a.flags {
            if !PER_WORKER.contains(&k.as_str()) {
                args.extend([format!("--{k}"), v.clone()]);
            }
        }
        let n = share(nodes, i);
        args.extend([
            "--nodes".into(),
            n.to_string(),
            "--id-base".into(),
            id.to_string(),
        ]);
        args.extend([
            "--workers".into(),
            share(workers, i).to_string(),
            "--pump-nodes".into(),
            share(pump_nodes, i).to_string(),
        ]);
        args.push("--json".into());
        if p.cross_nodes > 0 {
            args.push("--await-assign".into());
        }
        if a.has("quiet") {
            args.push("--quiet".into());
        }
        id += n as u64 + 100_000;
        let child = Command::new(&exe)
            .args(&args)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn worker {i}: {e}"))?;
        children.push(child);
    }
    let children = Rc::new(RefCell::new(children));
    let watch = children.clone();
    crosses.keep_running = Some(Box::new(move || {
        watch
            .borrow_mut()
            .iter_mut()
            .any(|c| matches!(c.try_wait(), Ok(None)))
    }));
    if p.cross_nodes > 0 {
        crosses.run().map_err(|e| e.to_string())?;
    }
    crosses.keep_running = None; // releases its handle on the worker list
    let mut total = Stats::default();
    for (k, n) in &crosses.stats.failures {
        *total
            .failures
            .entry(format!("cross node: {k}"))
            .or_default() += n;
    }
    let children = Rc::try_unwrap(children)
        .map_err(|_| "worker list still shared".to_string())?
        .into_inner();
    for (i, child) in children.into_iter().enumerate() {
        let out = child
            .wait_with_output()
            .map_err(|e| format!("worker {i}: {e}"))?;
        let line = String::from_utf8_lossy(&out.stdout);
        match line
            .lines()
            .last()
            .and_then(|l| serde_json::from_str::<Value>(l).ok())
        {
            Some(v) => merge(&mut total, &v),
            None => {
                *total
                    .failures
                    .entry(format!("worker {i} gave no report"))
                    .or_default() += 1
            }
        }
    }
    derive_server_figures(&mut total);
    Ok(total)
}
