//! The command line: flags and switches as given, and the [`Plan`] (and, for `public`, the
//! HTTP plan) they make. Every flag's default is here, next to where it is read.

use crate::engine::Plan;
use crate::http_load;
use std::time::Duration;

pub struct Args {
    pub mode: String,
    pub flags: Vec<(String, String)>,
    pub switches: Vec<String>,
}

impl Args {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{name}: bad value {v:?}")),
        }
    }
    pub fn secs(&self, name: &str, default: f64) -> Result<Duration, String> {
        let v: f64 = self.num(name, default)?;
        if !(v.is_finite() && v >= 0.0) {
            return Err(format!("--{name}: must be seconds >= 0"));
        }
        Ok(Duration::from_secs_f64(v))
    }
    pub fn has(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }
}

/// Node ids each churn worker cycles through.
pub const IDS_PER_WORKER: u32 = 4;
pub fn parse(argv: Vec<String>) -> Result<Args, String> {
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

pub fn plan(a: &Args) -> Result<Plan, String> {
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

pub fn http_plan(a: &Args, plat: &str) -> Result<http_load::HttpPlan, String> {
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
