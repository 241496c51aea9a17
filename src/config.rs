//! Configuration: embedded defaults, then a TOML file (`--config`), then command-line flags.
//! Every flag is also a config key (dashes become underscores). Errors name the key.

use crate::cluster::admission::Cidr;
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The token used when none is configured. Only accepted on loopback listeners.
pub const DEFAULT_TOKEN: &str = "dev-token-change-me";
/// The admin token used when none is configured. Only accepted on a loopback admin listener.
pub const DEFAULT_ADMIN_TOKEN: &str = "dev-admin-token-change-me";

/// The admin API's default address. If it cannot be bound (another instance on this host has
/// it), the node starts without the admin API and says so; an explicitly configured other
/// address that cannot be bound is an error.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    7701,
));

/// The default key prefix of a failover group in etcd.
pub const DEFAULT_ETCD_PREFIX: &str = "/login-node/default";

/// Keys SIGHUP applies to a running node; the others need a restart.
pub const RELOADABLE: &[&str] = &[
    "token",
    "previous_token",
    "heartbeat_interval",
    "heartbeat_timeout",
    "auth_timeout",
    "auth_window",
    "max_frame",
    "max_connections",
    "max_write_buffer",
    "duplicate_policy",
    "busy_threshold",
    "full_threshold",
    "admin_token",
    "viewer_token",
    "log_level",
    "allow",
    "auth_fail_limit",
    "auth_fail_window",
    "public_max_age",
    "new_server_days",
];

/// What happens when a node logs in while the same (node_type, node_id) is online.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DuplicatePolicy {
    /// The new login wins; the old connection gets KICK 1.
    Replace,
    /// The new login gets AUTH_RESULT 3.
    Reject,
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The `log` crate's filter for this level.
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Off => log::LevelFilter::Off,
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

/// The whole configuration of a login node.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Node port address.
    pub listen: SocketAddr,
    /// Shared secret for AUTH signatures.
    pub token: String,
    /// A second accepted token, for rotating `token` without downtime.
    pub previous_token: Option<String>,
    /// Seconds between heartbeats, announced in AUTH_RESULT.
    pub heartbeat_interval: u16,
    /// Seconds of silence after which a node is dropped (KICK 2).
    pub heartbeat_timeout: u16,
    /// Milliseconds a connection may take to send AUTH.
    pub auth_timeout_ms: u64,
    /// Seconds an AUTH `time` may differ from the server clock.
    pub auth_window: u32,
    /// Largest accepted frame payload (`len`), 29 (the smallest AUTH) ..=65535.
    pub max_frame: usize,
    /// Most open connections on the node port; an AUTH beyond it gets code 5.
    pub max_connections: usize,
    /// Bytes queued for one connection before it is dropped as not reading.
    pub max_write_buffer: usize,
    /// What a duplicate login does.
    pub duplicate_policy: DuplicatePolicy,
    /// Capacity of a cross node that reports 0.
    pub default_capacity: u16,
    /// Log verbosity.
    pub log_level: LogLevel,
    /// Directory of the durable state (journal, snapshot); `None` keeps state in memory only.
    pub state_dir: Option<PathBuf>,
    /// Admin HTTP API address; `None` disables it.
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token for the admin API (all but `/healthz` and `/metrics`).
    pub admin_token: String,
    /// Read-only bearer token for the admin API and its console: `GET` endpoints only, every
    /// change gets 403. `None`: no viewer access.
    pub viewer_token: Option<String>,
    /// Players online at which a game node shows as busy.
    pub busy_threshold: u32,
    /// Players online at which a game node shows as full.
    pub full_threshold: u32,
    /// Audit log of admin changes; `None` = `<state_dir>/audit.log` (no audit log without a
    /// state directory).
    pub audit_log: Option<PathBuf>,
    /// Peer addresses allowed on the node port (empty = all); others get AUTH_RESULT 4.
    pub allow: Vec<Cidr>,
    /// Bad signatures or times (codes 1, 2) of one identity (address + node type + node id)
    /// within `auth_fail_window` after which its AUTHs are closed unanswered for the rest of
    /// the window; an address is closed at accept after 50 times as many failures of any
    /// counted code (1, 2, 4, 6). 0 = never.
    pub auth_fail_limit: u32,
    /// The window of `auth_fail_limit`, in seconds.
    pub auth_fail_window: u32,
    /// etcd client URLs of a failover group; empty = no group (the local state directory).
    pub etcd: Vec<String>,
    /// The group's key prefix in etcd.
    pub etcd_prefix: String,
    /// This member's name in the group; `None` = the node listener's host:port.
    pub member_name: Option<String>,
    /// The group lease's TTL in seconds.
    pub lease_ttl: u64,
    /// Address of the players' server list (`GET /public/servers/<plat>`, no token);
    /// `None` serves it on the admin listener only.
    pub public_listen: Option<SocketAddr>,
    /// `Cache-Control: max-age` of the players' server list, in seconds.
    pub public_max_age: u32,
    /// Days after its `open_time` during which a game server shows as `new` (0: never).
    pub new_server_days: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            token: DEFAULT_TOKEN.to_string(),
            previous_token: None,
            heartbeat_interval: 10,
            heartbeat_timeout: 30,
            auth_timeout_ms: 10_000,
            auth_window: 300,
            max_frame: 65_535,
            max_connections: 100_000,
            max_write_buffer: 4 << 20,
            duplicate_policy: DuplicatePolicy::Replace,
            default_capacity: 100,
            log_level: LogLevel::Info,
            state_dir: Some(PathBuf::from("state")),
            admin_listen: Some(DEFAULT_ADMIN_LISTEN),
            admin_token: DEFAULT_ADMIN_TOKEN.to_string(),
            viewer_token: None,
            busy_threshold: 2000,
            full_threshold: 3000,
            audit_log: None,
            allow: Vec::new(),
            auth_fail_limit: 20,
            auth_fail_window: 60,
            etcd: Vec::new(),
            etcd_prefix: DEFAULT_ETCD_PREFIX.to_string(),
            member_name: None,
            lease_ttl: 5,
            public_listen: None,
            public_max_age: 5,
            new_server_days: 7,
        }
    }
}

/// A configuration error; the binary exits with code 2 on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// The TOML file: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    token: Option<String>,
    previous_token: Option<String>,
    heartbeat_interval: Option<i64>,
    heartbeat_timeout: Option<i64>,
    auth_timeout: Option<toml::Value>,
    auth_window: Option<i64>,
    max_frame: Option<i64>,
    max_connections: Option<i64>,
    max_write_buffer: Option<i64>,
    duplicate_policy: Option<String>,
    default_capacity: Option<i64>,
    log_level: Option<String>,
    state_dir: Option<String>,
    admin_listen: Option<String>,
    admin_token: Option<String>,
    viewer_token: Option<String>,
    busy_threshold: Option<i64>,
    full_threshold: Option<i64>,
    audit_log: Option<String>,
    allow: Option<toml::Value>,
    auth_fail_limit: Option<i64>,
    auth_fail_window: Option<i64>,
    etcd: Option<toml::Value>,
    etcd_prefix: Option<String>,
    member_name: Option<String>,
    lease_ttl: Option<i64>,
    public_listen: Option<String>,
    public_max_age: Option<i64>,
    new_server_days: Option<i64>,
}

/// One line per flag for `--help`: (flag, value name, description).
pub const FLAGS: &[(&str, &str, &str)] = &[
    (
        "--config",
        "FILE",
        "TOML config file; flags given after it override its keys",
    ),
    (
        "--listen",
        "ADDR",
        "node port address [default: 127.0.0.1:7700]",
    ),
    (
        "--token",
        "TOKEN",
        "shared AUTH secret [default: a dev token, loopback only]",
    ),
    (
        "--previous-token",
        "TOKEN",
        "also accept this token (rotation) [default: none]",
    ),
    (
        "--heartbeat-interval",
        "SECS",
        "heartbeat interval announced to nodes [default: 10]",
    ),
    (
        "--heartbeat-timeout",
        "SECS",
        "drop a node silent this long (KICK 2) [default: 30]",
    ),
    (
        "--auth-timeout",
        "SECS",
        "close a connection that has not sent AUTH by then (decimals allowed) [default: 10]",
    ),
    (
        "--auth-window",
        "SECS",
        "accepted distance of AUTH time from the server clock [default: 300]",
    ),
    (
        "--max-frame",
        "BYTES",
        "largest accepted frame length, 29..65535 [default: 65535]",
    ),
    (
        "--max-connections",
        "N",
        "open connections allowed; AUTH beyond gets code 5 [default: 100000]",
    ),
    (
        "--max-write-buffer",
        "BYTES",
        "bytes queued for a node that does not read before it is dropped [default: 4194304]",
    ),
    (
        "--duplicate-policy",
        "replace|reject",
        "a second login of an online node [default: replace]",
    ),
    (
        "--default-capacity",
        "N",
        "capacity of a cross node reporting 0 [default: 100]",
    ),
    (
        "--log-level",
        "LEVEL",
        "off|error|warn|info|debug|trace [default: info]",
    ),
    (
        "--state-dir",
        "DIR",
        "durable state (assignments, whitelist, flags); \"\" = memory only [default: ./state]",
    ),
    (
        "--admin-listen",
        "ADDR",
        "admin HTTP API address; \"off\" disables it [default: 127.0.0.1:7701]",
    ),
    (
        "--admin-token",
        "TOKEN",
        "admin API bearer token [default: a dev token, loopback only]",
    ),
    (
        "--viewer-token",
        "TOKEN",
        "read-only admin API token (GET only, changes get 403); \"\" = none [default: none]",
    ),
    (
        "--busy-threshold",
        "N",
        "players online at which a game node is busy [default: 2000]",
    ),
    (
        "--full-threshold",
        "N",
        "players online at which a game node is full [default: 3000]",
    ),
    (
        "--audit-log",
        "FILE",
        "audit log of admin changes [default: <state-dir>/audit.log]",
    ),
    (
        "--allow",
        "CIDR,..",
        "peer addresses allowed on the node port, others get AUTH code 4 [default: all]",
    ),
    (
        "--auth-fail-limit",
        "N",
        "bad AUTHs of one node (address, type, id) before it is refused for the window; an address is refused after 50x as many; 0 = off [default: 20]",
    ),
    (
        "--auth-fail-window",
        "SECS",
        "the window of --auth-fail-limit [default: 60]",
    ),
    (
        "--etcd",
        "URLS",
        "etcd client URLs (comma-separated): join a failover group, state in etcd [default: none]",
    ),
    (
        "--etcd-prefix",
        "PREFIX",
        "the group's key prefix in etcd [default: /login-node/default]",
    ),
    (
        "--member-name",
        "NAME",
        "this member's name in the group [default: host:port of --listen]",
    ),
    (
        "--lease-ttl",
        "SECS",
        "group lease TTL: a dead active member is replaced after about this long [default: 5]",
    ),
    (
        "--public-listen",
        "ADDR",
        "players' server list (GET /public/servers/<plat>, no token); \"off\" = admin listener only [default: off]",
    ),
    (
        "--public-max-age",
        "SECS",
        "Cache-Control max-age of the players' server list [default: 5]",
    ),
    (
        "--new-server-days",
        "DAYS",
        "days after open_time a game server is listed as new; 0 = never [default: 7]",
    ),
];

fn int_in<T: TryFrom<i64>>(key: &str, v: i64, min: i64, max: i64) -> Result<T, ConfigError> {
    if v < min || v > max {
        return err(format!("{key}: {v} is out of range ({min}..={max})"));
    }
    T::try_from(v).or_else(|_| err(format!("{key}: {v} is out of range")))
}

fn parse_int(key: &str, s: &str) -> Result<i64, ConfigError> {
    s.trim()
        .parse::<i64>()
        .or_else(|_| err(format!("{key}: expected a whole number, got {s:?}")))
}

fn parse_seconds_ms(key: &str, s: &str) -> Result<u64, ConfigError> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => {
            Ok((v * 1000.0).round().max(1.0) as u64)
        }
        _ => err(format!(
            "{key}: expected seconds between 0 and 86400, got {s:?}"
        )),
    }
}

impl Config {
    /// Sets one key from its textual value (flag or file). `key` uses underscores.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            "listen" => {
                self.listen = value.parse().or_else(|_| {
                    err(format!(
                        "listen: {value:?} is not an address like 127.0.0.1:7700"
                    ))
                })?
            }
            "token" => {
                if value.is_empty() {
                    return err("token: must not be empty");
                }
                self.token = value.to_string()
            }
            "previous_token" => {
                self.previous_token = if value.is_empty() {
                    None
                } else {
                    Some(value.to_string())
                }
            }
            "heartbeat_interval" => {
                self.heartbeat_interval = int_in(key, parse_int(key, value)?, 1, 65_535)?
            }
            "heartbeat_timeout" => {
                self.heartbeat_timeout = int_in(key, parse_int(key, value)?, 1, 65_535)?
            }
            "auth_timeout" => self.auth_timeout_ms = parse_seconds_ms(key, value)?,
            "auth_window" => {
                self.auth_window = int_in(key, parse_int(key, value)?, 0, u32::MAX as i64)?
            }
            "max_frame" => self.max_frame = int_in(key, parse_int(key, value)?, 16, 65_535)?,
            "max_connections" => {
                self.max_connections = int_in(key, parse_int(key, value)?, 1, 100_000_000)?
            }
            "max_write_buffer" => {
                self.max_write_buffer = int_in(key, parse_int(key, value)?, 65_536, 1 << 32)?
            }
            "default_capacity" => {
                self.default_capacity = int_in(key, parse_int(key, value)?, 1, 65_535)?
            }
            "duplicate_policy" => {
                self.duplicate_policy = match value {
                    "replace" => DuplicatePolicy::Replace,
                    "reject" => DuplicatePolicy::Reject,
                    _ => {
                        return err(format!(
                            "duplicate_policy: expected replace or reject, got {value:?}"
                        ))
                    }
                }
            }
            "log_level" => {
                self.log_level = match value.to_ascii_lowercase().as_str() {
                    "off" => LogLevel::Off,
                    "error" => LogLevel::Error,
                    "warn" => LogLevel::Warn,
                    "info" => LogLevel::Info,
                    "debug" => LogLevel::Debug,
                    "trace" => LogLevel::Trace,
                    _ => {
                        return err(format!(
                            "log_level: expected off|error|warn|info|debug|trace, got {value:?}"
                        ))
                    }
                }
            }
            "state_dir" => {
                self.state_dir = (!value.is_empty()).then(|| PathBuf::from(value));
            }
            "admin_listen" => {
                self.admin_listen = match value {
                    "" | "off" => None,
                    v => Some(v.parse().or_else(|_| {
                        err(format!(
                            "admin_listen: {v:?} is not an address like 127.0.0.1:7701 (or \"off\")"
                        ))
                    })?),
                }
            }
            "admin_token" => {
                if value.is_empty() {
                    return err("admin_token: must not be empty");
                }
                self.admin_token = value.to_string()
            }
            "viewer_token" => {
                self.viewer_token = (!value.is_empty()).then(|| value.to_string());
            }
            "busy_threshold" => {
                self.busy_threshold = int_in(key, parse_int(key, value)?, 1, u32::MAX as i64)?
            }
            "full_threshold" => {
                self.full_threshold = int_in(key, parse_int(key, value)?, 1, u32::MAX as i64)?
            }
            "audit_log" => {
                self.audit_log = (!value.is_empty()).then(|| PathBuf::from(value));
            }
            "allow" => {
                self.allow = value
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| {
                        s.parse::<Cidr>()
                            .map_err(|e| ConfigError(format!("allow: {e}")))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "auth_fail_limit" => {
                self.auth_fail_limit = int_in(key, parse_int(key, value)?, 0, 1_000_000)?
            }
            "auth_fail_window" => {
                self.auth_fail_window = int_in(key, parse_int(key, value)?, 1, 86_400)?
            }
            "etcd" => {
                self.etcd = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        if s.starts_with("http://") {
                            Ok(s.trim_end_matches('/').to_string())
                        } else {
                            err(format!(
                                "etcd: {s:?} is not an http:// URL (TLS is not supported)"
                            ))
                        }
                    })
                    .collect::<Result<_, _>>()?;
            }
            "etcd_prefix" => {
                let p = value.trim_end_matches('/');
                if !p.starts_with('/') || p.len() < 2 {
                    return err(format!(
                        "etcd_prefix: {value:?} must start with / and name a prefix"
                    ));
                }
                self.etcd_prefix = p.to_string();
            }
            "member_name" => {
                if value.is_empty() || value.len() > 200 {
                    return err("member_name: 1..200 characters");
                }
                self.member_name = Some(value.to_string());
            }
            "lease_ttl" => self.lease_ttl = int_in(key, parse_int(key, value)?, 2, 600)?,
            "public_listen" => {
                self.public_listen = match value {
                    "" | "off" => None,
                    v => Some(v.parse().or_else(|_| {
                        err(format!(
                            "public_listen: {v:?} is not an address like 0.0.0.0:7702 (or \"off\")"
                        ))
                    })?),
                }
            }
            "public_max_age" => {
                self.public_max_age = int_in(key, parse_int(key, value)?, 0, 86_400)?
            }
            "new_server_days" => {
                self.new_server_days = int_in(key, parse_int(key, value)?, 0, 36_500)?
            }
            _ => return err(format!("unknown key {key:?}")),
        }
        Ok(())
    }

    /// Applies a TOML document on top of this configuration.
    pub fn merge_toml(&mut self, text: &str) -> Result<(), ConfigError> {
        let file: FileConfig =
            toml::from_str(text).map_err(|e| ConfigError(e.to_string().trim_end().to_string()))?;
        let strings = [
            ("listen", file.listen),
            ("token", file.token),
            ("previous_token", file.previous_token),
            ("duplicate_policy", file.duplicate_policy),
            ("log_level", file.log_level),
            ("state_dir", file.state_dir),
            ("admin_listen", file.admin_listen),
            ("admin_token", file.admin_token),
            ("viewer_token", file.viewer_token),
            ("audit_log", file.audit_log),
            ("etcd_prefix", file.etcd_prefix),
            ("member_name", file.member_name),
            ("public_listen", file.public_listen),
        ];
        for (key, v) in strings {
            if let Some(v) = v {
                self.set(key, &v)?;
            }
        }
        let ints = [
            ("heartbeat_interval", file.heartbeat_interval),
            ("heartbeat_timeout", file.heartbeat_timeout),
            ("auth_window", file.auth_window),
            ("max_frame", file.max_frame),
            ("max_connections", file.max_connections),
            ("max_write_buffer", file.max_write_buffer),
            ("default_capacity", file.default_capacity),
            ("busy_threshold", file.busy_threshold),
            ("full_threshold", file.full_threshold),
            ("auth_fail_limit", file.auth_fail_limit),
            ("auth_fail_window", file.auth_fail_window),
            ("lease_ttl", file.lease_ttl),
            ("public_max_age", file.public_max_age),
            ("new_server_days", file.new_server_days),
        ];
        for (key, v) in ints {
            if let Some(v) = v {
                self.set(key, &v.to_string())?;
            }
        }
        match file.etcd {
            None => {}
            Some(toml::Value::String(s)) => self.set("etcd", &s)?,
            Some(toml::Value::Array(items)) => {
                let urls: Result<Vec<String>, ConfigError> = items
                    .into_iter()
                    .map(|i| match i {
                        toml::Value::String(s) => Ok(s),
                        other => err(format!("etcd: expected URL strings, got {other}")),
                    })
                    .collect();
                self.set("etcd", &urls?.join(","))?;
            }
            Some(other) => return err(format!("etcd: expected URL strings, got {other}")),
        }
        match file.allow {
            None => {}
            Some(toml::Value::String(s)) => self.set("allow", &s)?,
            Some(toml::Value::Array(items)) => {
                let mut list = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        toml::Value::String(s) => list.push(s),
                        other => return err(format!("allow: expected CIDR strings, got {other}")),
                    }
                }
                self.set("allow", &list.join(","))?;
            }
            Some(other) => return err(format!("allow: expected a list of CIDRs, got {other}")),
        }
        match file.auth_timeout {
            None => {}
            Some(toml::Value::Integer(i)) => self.set("auth_timeout", &i.to_string())?,
            Some(toml::Value::Float(f)) => self.set("auth_timeout", &f.to_string())?,
            Some(other) => return err(format!("auth_timeout: expected seconds, got {other}")),
        }
        Ok(())
    }

    /// Reads and applies a TOML file.
    pub fn merge_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("config {}: {e}", path.display())))?;
        self.merge_toml(&text)
            .map_err(|e| ConfigError(format!("config {}: {e}", path.display())))
    }

    /// Builds a configuration from command-line arguments (without the program name).
    /// `--config FILE` is applied where it appears; later flags override it.
    pub fn from_args<I: IntoIterator<Item = String>>(args: I) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let Some(flag) = arg.strip_prefix("--") else {
                return err(format!("unexpected argument {arg:?} (see --help)"));
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (flag.to_string(), None),
            };
            if !FLAGS.iter().any(|(f, _, _)| f[2..] == name) {
                return err(format!("unknown flag --{name} (see --help)"));
            }
            let value = match inline {
                Some(v) => v,
                None => args
                    .next()
                    .ok_or_else(|| ConfigError(format!("--{name} needs a value")))?,
            };
            let key = name.replace('-', "_");
            if key == "config" {
                cfg.merge_file(Path::new(&value))?;
            } else {
                cfg.set(&key, &value)
                    .map_err(|e| ConfigError(format!("--{name}: {e}")))?;
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every rule, one key at a time and then those that involve several keys. The
    /// one validation: [`Self::from_args`] (the binary, and its reloads) and
    /// `LoginNode::builder().build()` both call it, so code cannot build a node the binary
    /// would refuse.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_max_frame(self.max_frame)?;
        self.check_ranges()?;
        self.check_dev_tokens(self.listen, self.admin_listen)?;
        if self.viewer_token.as_deref() == Some(self.admin_token.as_str()) {
            // One token with two roles: every request would be ambiguous.
            return err("viewer_token: must differ from admin_token");
        }
        if self.full_threshold < self.busy_threshold {
            return err(format!(
                "full_threshold: {} must not be below busy_threshold {}",
                self.full_threshold, self.busy_threshold
            ));
        }
        if self.heartbeat_timeout <= self.heartbeat_interval {
            return err(format!(
                "heartbeat_timeout: {} must exceed heartbeat_interval {}",
                self.heartbeat_timeout, self.heartbeat_interval
            ));
        }
        Ok(())
    }

    /// The ranges [`Self::set`] enforces on text, for a `Config` built in code.
    fn check_ranges(&self) -> Result<(), ConfigError> {
        let ints: [(&str, u64, u64, u64); 12] = [
            (
                "heartbeat_interval",
                self.heartbeat_interval.into(),
                1,
                65_535,
            ),
            (
                "heartbeat_timeout",
                self.heartbeat_timeout.into(),
                1,
                65_535,
            ),
            ("auth_timeout (ms)", self.auth_timeout_ms, 1, 86_400_000),
            ("max_frame", self.max_frame as u64, 16, 65_535),
            (
                "max_connections",
                self.max_connections as u64,
                1,
                100_000_000,
            ),
            (
                "max_write_buffer",
                self.max_write_buffer as u64,
                65_536,
                1 << 32,
            ),
            ("default_capacity", self.default_capacity.into(), 1, 65_535),
            (
                "busy_threshold",
                self.busy_threshold.into(),
                1,
                u32::MAX.into(),
            ),
            (
                "full_threshold",
                self.full_threshold.into(),
                1,
                u32::MAX.into(),
            ),
            ("auth_fail_limit", self.auth_fail_limit.into(), 0, 1_000_000),
            ("auth_fail_window", self.auth_fail_window.into(), 1, 86_400),
            ("auth_window", self.auth_window.into(), 0, u32::MAX.into()),
        ];
        for (key, v, min, max) in ints {
            if v < min || v > max {
                return err(format!("{key}: {v} is out of range ({min}..={max})"));
            }
        }
        if self.token.is_empty() {
            return err("token: must not be empty");
        }
        if self.admin_token.is_empty() {
            return err("admin_token: must not be empty");
        }
        if self.previous_token.as_deref() == Some("") {
            return err("previous_token: must not be empty (use None)");
        }
        Ok(())
    }

    /// Refuses a development token on a listener that is not loopback. `listen` and `admin`
    /// are the addresses judged: the configured ones at start, the ones actually bound on a
    /// reload (`listen` needs a restart, so a reloaded file's own `listen` proves nothing).
    pub fn check_dev_tokens(
        &self,
        listen: SocketAddr,
        admin: Option<SocketAddr>,
    ) -> Result<(), ConfigError> {
        if self.token == DEFAULT_TOKEN && !listen.ip().is_loopback() {
            return err(format!(
                "token: refusing to listen on non-loopback {listen} with the default token; set token"
            ));
        }
        if let Some(admin) = admin {
            if self.admin_token == DEFAULT_ADMIN_TOKEN && !admin.ip().is_loopback() {
                return err(format!(
                    "admin_token: refusing a non-loopback admin listener {admin} with the default admin token; set admin_token"
                ));
            }
        }
        Ok(())
    }

    /// The accepted tokens: `token`, then `previous_token` if set.
    pub fn tokens(&self) -> Vec<Box<[u8]>> {
        let mut t = vec![self.token.as_bytes().into()];
        if let Some(p) = &self.previous_token {
            t.push(p.as_bytes().into());
        }
        t
    }

    /// The audit log's path: `audit_log`, else `<state_dir>/audit.log`.
    pub fn audit_path(&self) -> Option<PathBuf> {
        self.audit_log
            .clone()
            .or_else(|| self.state_dir.as_ref().map(|d| d.join("audit.log")))
    }

    /// The keys whose values differ between `self` and `other`, as (key, restart needed).
    /// Token values are never part of the answer, only their names.
    pub fn changed_keys(&self, other: &Config) -> Vec<(&'static str, bool)> {
        let mut out = Vec::new();
        let mut check = |key: &'static str, differs: bool| {
            if differs {
                out.push((key, !RELOADABLE.contains(&key)));
            }
        };
        check("listen", self.listen != other.listen);
        check("token", self.token != other.token);
        check(
            "previous_token",
            self.previous_token != other.previous_token,
        );
        check(
            "heartbeat_interval",
            self.heartbeat_interval != other.heartbeat_interval,
        );
        check(
            "heartbeat_timeout",
            self.heartbeat_timeout != other.heartbeat_timeout,
        );
        check(
            "auth_timeout",
            self.auth_timeout_ms != other.auth_timeout_ms,
        );
        check("auth_window", self.auth_window != other.auth_window);
        check("max_frame", self.max_frame != other.max_frame);
        check(
            "max_connections",
            self.max_connections != other.max_connections,
        );
        check(
            "max_write_buffer",
            self.max_write_buffer != other.max_write_buffer,
        );
        check(
            "duplicate_policy",
            self.duplicate_policy != other.duplicate_policy,
        );
        check(
            "default_capacity",
            self.default_capacity != other.default_capacity,
        );
        check("log_level", self.log_level != other.log_level);
        check("state_dir", self.state_dir != other.state_dir);
        check("admin_listen", self.admin_listen != other.admin_listen);
        check("admin_token", self.admin_token != other.admin_token);
        check("viewer_token", self.viewer_token != other.viewer_token);
        check(
            "busy_threshold",
            self.busy_threshold != other.busy_threshold,
        );
        check(
            "full_threshold",
            self.full_threshold != other.full_threshold,
        );
        check("audit_log", self.audit_log != other.audit_log);
        check("allow", self.allow != other.allow);
        check(
            "auth_fail_limit",
            self.auth_fail_limit != other.auth_fail_limit,
        );
        check(
            "auth_fail_window",
            self.auth_fail_window != other.auth_fail_window,
        );
        check("public_listen", self.public_listen != other.public_listen);
        check(
            "public_max_age",
            self.public_max_age != other.public_max_age,
        );
        check(
            "new_server_days",
            self.new_server_days != other.new_server_days,
        );
        out
    }

    /// `--help` text.
    pub fn help() -> String {
        let mut s = String::from(
            "login-node: a login node for game-server clusters (protocol v1)\n\n\
             Usage: login-node [--config FILE] [FLAGS]\n\n\
             Every flag is also a config file key, with underscores (--heartbeat-timeout -> heartbeat_timeout).\n\n\
             Flags:\n",
        );
        for (flag, value, what) in FLAGS {
            s.push_str(&format!("  {:<34} {}\n", format!("{flag} {value}"), what));
        }
        s.push_str("  --help                             this text\n  --version                          the version\n");
        s
    }
}

/// The smallest AUTH payload: cmd (2), node_type (1), node_id (4), an empty plat (2),
/// time (4), sign (16).
pub const MIN_AUTH_PAYLOAD: usize = 29;

/// A `max_frame` below the smallest AUTH would refuse every node (KICK 5); refused at start.
fn check_max_frame(max_frame: usize) -> Result<(), ConfigError> {
    if max_frame < MIN_AUTH_PAYLOAD {
        return err(format!(
            "max_frame: {max_frame} is below {MIN_AUTH_PAYLOAD}, the smallest AUTH frame; no node could log in"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn defaults_are_a_working_loopback_node() {
        let c = Config::from_args(Vec::new()).expect("defaults valid");
        assert_eq!(c.listen.to_string(), "127.0.0.1:7700");
        assert_eq!(c.token, DEFAULT_TOKEN);
        assert_eq!(c.duplicate_policy, DuplicatePolicy::Replace);
    }

    #[test]
    fn flags_override_defaults_in_both_spellings() {
        let c = Config::from_args(args("--heartbeat-interval 5 --heartbeat-timeout=12 --auth-timeout 0.25 --duplicate-policy reject"))
            .expect("valid");
        assert_eq!(
            (c.heartbeat_interval, c.heartbeat_timeout, c.auth_timeout_ms),
            (5, 12, 250)
        );
        assert_eq!(c.duplicate_policy, DuplicatePolicy::Reject);
    }

    #[test]
    fn default_token_refused_off_loopback() {
        let e = Config::from_args(args("--listen 0.0.0.0:7700")).expect_err("refused");
        assert!(e.0.starts_with("token:"), "{e}");
        Config::from_args(args("--listen 0.0.0.0:7700 --token s3cret"))
            .expect("custom token is fine");
    }

    #[test]
    fn max_frame_below_the_smallest_auth_is_refused() {
        let e = Config::from_args(args("--max-frame 28")).expect_err("too small");
        assert!(e.0.starts_with("max_frame:") && e.0.contains("AUTH"), "{e}");
        let c = Config::from_args(args("--max-frame 29")).expect("the smallest AUTH fits");
        assert_eq!(c.max_frame, MIN_AUTH_PAYLOAD);
    }

    #[test]
    fn errors_name_the_key() {
        for (a, key) in [
            ("--max-frame 3", "max_frame"),
            ("--heartbeat-interval x", "heartbeat_interval"),
            ("--duplicate-policy maybe", "duplicate_policy"),
            ("--listen nowhere", "listen"),
            ("--log-level loud", "log_level"),
        ] {
            let e = Config::from_args(args(a)).expect_err(a);
            assert!(e.0.contains(key), "{a}: {e}");
        }
        assert!(Config::from_args(args("--bogus 1"))
            .expect_err("unknown")
            .0
            .contains("--bogus"));
        assert!(Config::from_args(args("--token"))
            .expect_err("no value")
            .0
            .contains("needs a value"));
    }

    #[test]
    fn toml_keys_apply_and_unknown_keys_are_refused() {
        let mut c = Config::default();
        c.merge_toml("listen = \"127.0.0.1:9\"\nheartbeat_timeout = 40\nauth_timeout = 1.5\nduplicate_policy = \"reject\"\n")
            .expect("valid");
        assert_eq!(c.listen.port(), 9);
        assert_eq!(c.heartbeat_timeout, 40);
        assert_eq!(c.auth_timeout_ms, 1_500);
        let e = c.merge_toml("heartbeat_intervall = 3").expect_err("typo");
        assert!(e.0.contains("heartbeat_intervall"), "{e}");
        let e = c
            .merge_toml("max_connections = \"many\"")
            .expect_err("type");
        assert!(
            e.0.contains("max_connections") || e.0.contains("integer"),
            "{e}"
        );
        let e = c.merge_toml("max_frame = 70000").expect_err("range");
        assert!(e.0.contains("max_frame"), "{e}");
    }

    #[test]
    fn timeout_must_exceed_interval() {
        let e = Config::from_args(args("--heartbeat-interval 30 --heartbeat-timeout 30"))
            .expect_err("invalid");
        assert!(e.0.contains("heartbeat_timeout"));
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../login-node.example.toml");
        let mut c = Config::default();
        c.merge_toml(text).expect("the shipped example is valid");
        assert_eq!(c, Config::default(), "the example shows the defaults");
    }

    #[test]
    fn operating_keys_parse_and_validate() {
        let c = Config::from_args(args(
            "--state-dir /var/lib/ln --admin-listen off --busy-threshold 5 --full-threshold 9 --audit-log /tmp/a.log",
        ))
        .expect("valid");
        assert_eq!(c.state_dir.as_deref(), Some(Path::new("/var/lib/ln")));
        assert_eq!(c.admin_listen, None);
        assert_eq!((c.busy_threshold, c.full_threshold), (5, 9));
        assert_eq!(c.audit_path().as_deref(), Some(Path::new("/tmp/a.log")));
        let mem = Config::from_args(vec!["--state-dir".into(), String::new()]).expect("valid");
        assert_eq!((mem.state_dir.clone(), mem.audit_path()), (None, None));
        assert_eq!(
            Config::default().audit_path().as_deref(),
            Some(Path::new("state/audit.log"))
        );
        let e = Config::from_args(args("--busy-threshold 10 --full-threshold 5")).expect_err("bad");
        assert!(e.0.starts_with("full_threshold"), "{e}");
        let e = Config::from_args(args("--admin-listen nowhere")).expect_err("bad");
        assert!(e.0.contains("admin_listen"), "{e}");
        let c = Config::from_args(args(
            "--public-listen 0.0.0.0:7702 --public-max-age 30 --new-server-days 0",
        ))
        .expect("valid");
        assert_eq!(c.public_listen, Some("0.0.0.0:7702".parse().expect("addr")));
        assert_eq!((c.public_max_age, c.new_server_days), (30, 0));
        let mut t = Config::default();
        t.merge_toml("public_listen = \"127.0.0.1:9\"\npublic_max_age = 60\nnew_server_days = 3\n")
            .expect("valid");
        assert_eq!((t.public_max_age, t.new_server_days), (60, 3));
        assert_eq!(t.public_listen.map(|a| a.port()), Some(9));
        for (a, key) in [
            ("--public-listen nowhere", "public_listen"),
            ("--public-max-age -1", "public_max_age"),
            ("--new-server-days x", "new_server_days"),
        ] {
            let e = Config::from_args(args(a)).expect_err(a);
            assert!(e.0.contains(key), "{a}: {e}");
        }
    }

    #[test]
    fn changed_keys_say_which_need_a_restart_and_never_show_values() {
        let a = Config::default();
        let b = Config {
            token: "new-secret".into(),
            listen: "127.0.0.1:1".parse().expect("addr"),
            full_threshold: 4000,
            ..Config::default()
        };
        let changes = a.changed_keys(&b);
        assert_eq!(
            changes,
            [
                ("listen", true),
                ("token", false),
                ("full_threshold", false)
            ]
        );
        assert!(a.changed_keys(&a).is_empty());
    }

    #[test]
    fn the_viewer_token_is_optional_reloadable_and_not_the_admin_token() {
        assert_eq!(Config::default().viewer_token, None);
        let c = Config::from_args(args("--viewer-token look-only")).expect("ok");
        assert_eq!(c.viewer_token.as_deref(), Some("look-only"));
        let mut f = Config::default();
        f.merge_toml("viewer_token = \"from-file\"").expect("toml");
        assert_eq!(f.viewer_token.as_deref(), Some("from-file"));
        f.merge_toml("viewer_token = \"\"").expect("toml");
        assert_eq!(f.viewer_token, None, "empty = none");
        let e = Config::from_args(args("--admin-token same --viewer-token same")).expect_err("bad");
        assert!(e.0.starts_with("viewer_token"), "{e}");
        assert_eq!(
            Config::default().changed_keys(&c),
            [("viewer_token", false)],
            "reloadable"
        );
    }
}
