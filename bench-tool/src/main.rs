//! login-node-bench: load-test a login node (protocol v1) before production.
//!
//! Modes: `hold` (N nodes online, heartbeating at the interval), `pump` (N nodes x K heartbeats
//! in flight), `churn` (connect, auth, info, close in a loop), `mixed` (all three at once).
//! One thread per process; `--procs P` splits the nodes over P worker processes when one
//! process's open-file limit is the bound. Progress each second on stderr, a summary at the
//! end, `--json` for scripts; the exit code is 1 when anything failed (an unanswered or
//! wrongly echoed heartbeat ACK included).

mod args;
mod engine;
mod hist;
mod http_load;
mod report;
mod stats;
mod workers;

use args::{http_plan, parse, plan};
use engine::Engine;
use std::process::ExitCode;

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
        match workers::run_workers(&args, &plan, procs) {
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
    let mut r = report::json(&args.mode, &stats);
    if let Some(h) = &http {
        r["http"] = report::http_json(h);
    }
    if args.has("json") {
        println!("{r}");
    } else {
        report::print_summary(&args.mode, &r);
    }
    if stats.failure_count() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
