//! login-node-bench: load-test a login node (protocol v1) before production.
//!
//! Modes: `hold` (N nodes online, heartbeating at the interval), `pump` (N nodes x K heartbeats
//! in flight), `churn` (connect, auth, info, close in a loop), `mixed` (all three at once).
//! One thread per process; `--procs P` splits the nodes over P worker processes when one
//! process's open-file limit is the bound. Progress each second on stderr, a summary at the
//! end, `--json` for scripts; the exit code is 1 when anything failed (an unanswered or
//! wrongly echoed heartbeat ACK included).

mod engine;
mod hist;
mod http_load;

use engine::{Engine, Plan, ServerSamples, Stats};
use hist::Hist;
use serde_json::{json, Value};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

const HELP: &str = "login-node-bench: load tool for login-node (protocol v1)

Usage: login-node-bench MODE [FLAGS]

Modes:
  hold    N game nodes (and --cross M cross nodes first) come online, then heartbeat at the
          server's interval for --duration: handshakes/s, handshake latency, ACK RTT
  pump    N nodes online, each keeps --pipeline K heartbeats in flight: ACKs/s, RTT
  churn   --workers W loops of connect -> AUTH -> INFO -> online -> close: sessions/s
  mixed   hold (--nodes), pump (--pump-nodes x --pipeline) and churn (--workers) at once
  public  hold (--nodes, all on --plat), and once they are online --http-conns keep-alive
          connections ask --public-addr for GET /public/servers/<plat> at --rate a second:
          requests/s, latency, 200 vs 304, next to the heartbeat RTT of the held nodes

Flags [default]:
  --addr ADDR            server node port [127.0.0.1:7700]
  --token TOKEN          shared token [dev-token-change-me]
  --plat NAME            plat and cross_plat of every node [bench]
  --nodes N              hold/pump nodes [1000]
  --cross M              cross nodes brought up first (hold, mixed) [0]
  --cross-capacity C     capacity each cross node reports [enough for all game nodes]
  --pump-nodes N         pump nodes in mixed [100]
  --pipeline K           heartbeats in flight per pump node [16]
  --workers W            churn workers [100 in churn, 20 in mixed]
  --hb-interval SECS     hold heartbeat interval [the server's]
  --duration SECS        measured seconds [10]
  --warmup SECS          unmeasured seconds before the window (pump, churn) [1]
  --inflight N           handshakes in progress at most [512]
  --hs-timeout SECS      a handshake not online by then fails [30]
  --id-base N            first node id [100000]
  --src-ips N            spread source addresses over 127.0.0.2.. [one per 8000 sockets]
  --server-pid PID       sample the server's CPU and RSS from /proc
  --procs P              worker processes (each its own open-file limit) [1]
  --public-addr ADDR     public: the players' list listener (or the admin listener)
  --http-conns N         public: keep-alive HTTP connections [8]
  --rate R               public: requests/s over all of them; 0 = as fast as answered [10000]
  --depth K              public: requests in flight per connection [1]
  --conditional          public: send If-None-Match with the last ETag (mostly 304s)
  --json                 print one JSON object at the end
  --quiet                no progress lines
";

struct Args {
    mode: String,
    flags: Vec<(String, String)>,
    switches: Vec<String>,
}

impl Args {
    fn get(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{name}: bad value {v:?}")),
        }
    }
    fn secs(&self, name: &str, default: f64) -> Result<Duration, String> {
        let v: f64 = self.num(name, default)?;
        if !(v.is_finite() && v >= 0.0) {
            return Err(format!("--{name}: must be seconds >= 0"));
        }
        Ok(Duration::from_secs_f64(v))
    }
    fn has(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }
}

/// Node ids each churn worker cycles through.
const IDS_PER_WORKER: u32 = 4;
fn parse(argv: Vec<String>) -> Result<Args, String> {
    let mut it = argv.into_iter();
    let mode = it.next().ok_or("missing MODE (see --help)")?;
    let mut args = Args {
        mode,
        flags: Vec::new(),
        switches: Vec::new(),
    };
    const SWITCHES: &[&str] = &["json", "quiet", "await-assign", "conditional"];
    while let Some(a) = it.next() {
        let name = a
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {a:?}"))?
            .to_string();
        if SWITCHES.contains(&name.as_str()) {
            args.switches.push(name);
        } else {
            let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            args.flags.push((name, v));
        }
    }
    Ok(args)
}

fn plan(a: &Args) -> Result<Plan, String> {
    let mode = a.mode.as_str();
    let nodes: usize = a.num("nodes", 1000)?;
    let cross: usize = a.num("cross", 0)?;
    let (hold, pump, workers) = match mode {
        "hold" | "public" => (nodes, 0, 0),
        "pump" => (0, nodes, 0),
        "churn" => (0, 0, a.num("workers", 100)?),
        "mixed" => (nodes, a.num("pump-nodes", 100)?, a.num("workers", 20)?),
        other => {
            return Err(format!(
                "unknown mode {other:?} (hold, pump, churn, mixed, public)"
            ))
        }
    };
    let cross = if matches!(mode, "hold" | "mixed") {
        cross
    } else {
        0
    };
    let games = hold + pump + workers;
    // Capacity counts assignments, and each churn worker cycles through its own ids.
    let assigned_ids = hold + pump + workers * IDS_PER_WORKER as usize;
    let default_cap = if cross > 0 {
        assigned_ids.div_ceil(cross).clamp(1, 65_535) as u16
    } else {
        16
    };
    let total_sockets = games + cross;
    // One source address per 8,000 sockets; churn closes actively and leaves TIME_WAIT
    // behind, so it always spreads over at least 4.
    let src_default = total_sockets
        .div_ceil(8000)
        .max(if workers > 0 { 4 } else { 1 });
    let hb = a
        .get("hb-interval")
        .map(|_| a.secs("hb-interval", 1.0))
        .transpose()?;
    Ok(Plan {
        addr: a
            .get("addr")
            .unwrap_or("127.0.0.1:7700")
            .parse()
            .map_err(|_| "--addr: not an address".to_string())?,
        token: a
            .get("token")
            .unwrap_or(login_node::config::DEFAULT_TOKEN)
            .to_string(),
        plat: a.get("plat").unwrap_or("bench").to_string(),
        id_base: a.num("id-base", 100_000)?,
        cross_nodes: cross,
        cross_capacity: a.num("cross-capacity", default_cap)?,
        await_assign: a.has("await-assign"),
        hold_nodes: hold,
        hold_interval: hb,
        pump_nodes: pump,
        pipeline: a.num("pipeline", 16)?,
        churn_workers: workers,
        ids_per_worker: IDS_PER_WORKER,
        inflight: a.num("inflight", 512)?,
        hs_timeout: a.secs("hs-timeout", 30.0)?,
        warmup: if matches!(mode, "hold" | "public") {
            Duration::ZERO
        } else {
            a.secs("warmup", 1.0)?
        },
        duration: a.secs("duration", 10.0)?,
        src_ips: a.num("src-ips", src_default)?.min(250),
        server_pid: a
            .get("server-pid")
            .map(|p| p.parse())
            .transpose()
            .map_err(|_| "--server-pid: bad pid".to_string())?,
        quiet: a.has("quiet"),
        label: String::new(),
    })
}

fn http_plan(a: &Args, plat: &str) -> Result<http_load::HttpPlan, String> {
    let addr = a
        .get("public-addr")
        .ok_or("public: --public-addr is required")?
        .parse()
        .map_err(|_| "--public-addr: not an address".to_string())?;
    let rate: f64 = a.num("rate", 10_000.0)?;
    if !(rate.is_finite() && rate >= 0.0) {
        return Err("--rate: must be >= 0".into());
    }
    Ok(http_load::HttpPlan {
        addr,
        path: format!("/public/servers/{plat}"),
        conns: a.num("http-conns", 8usize)?.max(1),
        rate: (rate > 0.0).then_some(rate),
        depth: a.num("depth", 1usize)?.max(1),
        conditional: a.has("conditional"),
    })
}

fn http_report(h: &http_load::HttpStats) -> Value {
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

fn report(mode: &str, s: &Stats) -> Value {
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

fn print_summary(mode: &str, r: &Value) {
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

fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid, exclusively borrowed `lim`;
    // setrlimit only reads the valid struct passed to it.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &raised);
        }
    }
}

/// Runs `procs` copies of this command, each with its share of the nodes and its own id
/// range, and merges their reports. Cross nodes are brought online here first and kept
/// heartbeating until the workers finish.
fn run_workers(a: &Args, p: &Plan, procs: usize) -> Result<Stats, String> {
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

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.len() < 2 || argv.iter().any(|a| a == "--help" || a == "-h") {
        print!("{HELP}");
        return if argv.len() < 2 {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let args = match parse(argv[1..].to_vec()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("login-node-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let plan = match plan(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("login-node-bench: {e}");
            return ExitCode::from(2);
        }
    };
    raise_nofile();
    let server_pid = plan.server_pid;
    let procs: usize = args.num("procs", 1).unwrap_or(1).max(1);
    let public = match (args.mode == "public").then(|| http_plan(&args, &plan.plat)) {
        None => None,
        Some(Ok(p)) if procs == 1 => Some(p),
        Some(Ok(_)) => {
            eprintln!("login-node-bench: public runs in one process (no --procs)");
            return ExitCode::from(2);
        }
        Some(Err(e)) => {
            eprintln!("login-node-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let mut http = None;
    let stats = if procs > 1 {
        match run_workers(&args, &plan, procs) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("login-node-bench: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        let mut engine = match Engine::new(plan) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("login-node-bench: {e}");
                return ExitCode::from(2);
            }
        };
        // The HTTP load runs on its own thread (the engine's loop stays one thread) and
        // starts when the held nodes are online.
        let load = public.map(http_load::spawn);
        if let Some((go, _, _)) = &load {
            engine.window_open = Some(go.clone());
        }
        let ran = engine.run();
        if let Some((_, stop, handle)) = load {
            stop.store(true, std::sync::atomic::Ordering::Release);
            match handle.join() {
                Ok(Ok(h)) => {
                    if h.requests == 0 {
                        engine.stats.failures.insert("no http answers".into(), 1);
                    }
                    if h.errors > 0 || h.other > 0 {
                        engine.stats.failures.insert(
                            "http connections closed or non-200/304 answers".into(),
                            h.errors + h.other,
                        );
                    }
                    http = Some(h);
                }
                Ok(Err(e)) => {
                    eprintln!("login-node-bench: http load: {e}");
                    return ExitCode::from(2);
                }
                Err(_) => {
                    eprintln!("login-node-bench: http load thread panicked");
                    return ExitCode::from(2);
                }
            }
        }
        if let Err(e) = ran {
            eprintln!("login-node-bench: poll failed: {e}");
            return ExitCode::from(2);
        }
        engine.stats
    };
    let mut stats = stats;
    if let Some(pid) = server_pid {
        if stats.server_samples.ramp.is_none() {
            *stats
                .failures
                .entry(format!(
                    "--server-pid {pid}: no server sample (is it running?)"
                ))
                .or_default() += 1;
        }
    }
    let mut r = report(&args.mode, &stats);
    if let Some(h) = &http {
        r["http"] = http_report(h);
    }
    if args.has("json") {
        println!("{r}");
    } else {
        print_summary(&args.mode, &r);
    }
    if stats.failure_count() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
