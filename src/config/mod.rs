//! Configuration: embedded defaults, then a TOML file (`--config`), then command-line flags.
//! Every flag is also a config key (dashes become underscores). Errors name the key.
//!
//! Every key is one row of the table in `keys.rs`; `table.rs` derives the struct, the TOML
//! fields, the flags and the reload rule from it, and `kinds.rs` parses each shape of value.
//! This file holds what spans keys: the order of sources, validation across keys, `--help`.

use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod keys;
mod kinds;
mod table;

use keys::FileConfig;
pub use keys::{Config, FLAGS, RELOADABLE};

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

impl Config {
    /// Applies a TOML document on top of this configuration.
    pub fn merge_toml(&mut self, text: &str) -> Result<(), ConfigError> {
        let file: FileConfig =
            toml::from_str(text).map_err(|e| ConfigError(e.to_string().trim_end().to_string()))?;
        file.apply(self)
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
        self.check_keys()?;
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
mod tests;
