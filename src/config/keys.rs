//! Every configuration key, once: its field, type, default, TOML and flag name, kind of
//! value (parser, range, file shape), whether SIGHUP applies it, and its `--help` line. The
//! `config_keys!` macro (`table.rs`) derives the struct, its default, the TOML file's fields,
//! `FLAGS`, `RELOADABLE`, `Config::set`, `changed_keys` and `apply_reloadable` from it, so a
//! new key is one row here.

use super::kinds::{
    Addr, CidrList, FileText, Int, Kind, Level, Name, OptionalAddr, OptionalPath, OptionalSecret,
    Policy, Prefix, Seconds, Secret, UrlList,
};
use super::table::config_keys;
use super::{
    err, ConfigError, DuplicatePolicy, LogLevel, DEFAULT_ADMIN_LISTEN, DEFAULT_ADMIN_TOKEN,
};
use super::{DEFAULT_ETCD_PREFIX, DEFAULT_TOKEN};
use crate::net::Cidr;
use std::net::SocketAddr;
use std::path::PathBuf;

config_keys! {
    /// Node port address.
    listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 7700)),
        "listen", Addr("127.0.0.1:7700"), restart,
        "--listen" "ADDR"
        "node port address [default: 127.0.0.1:7700]";
    /// Shared secret for AUTH signatures.
    token: String = DEFAULT_TOKEN.to_string(),
        "token", Secret, reloadable,
        "--token" "TOKEN"
        "shared AUTH secret [default: a dev token, loopback only]";
    /// A second accepted token, for rotating `token` without downtime.
    previous_token: Option<String> = None,
        "previous_token", OptionalSecret, reloadable,
        "--previous-token" "TOKEN"
        "also accept this token (rotation) [default: none]";
    /// Seconds between heartbeats, announced in AUTH_RESULT.
    heartbeat_interval: u16 = 10,
        "heartbeat_interval", Int(1, 65_535), reloadable,
        "--heartbeat-interval" "SECS"
        "heartbeat interval announced to nodes [default: 10]";
    /// Seconds of silence after which a node is dropped (KICK 2).
    heartbeat_timeout: u16 = 30,
        "heartbeat_timeout", Int(1, 65_535), reloadable,
        "--heartbeat-timeout" "SECS"
        "drop a node silent this long (KICK 2) [default: 30]";
    /// Milliseconds a connection may take to send AUTH.
    auth_timeout_ms: u64 = 10_000,
        "auth_timeout", Seconds, reloadable,
        "--auth-timeout" "SECS"
        "close a connection that has not sent AUTH by then (decimals allowed) [default: 10]";
    /// Seconds an AUTH `time` may differ from the server clock.
    auth_window: u32 = 300,
        "auth_window", Int(0, u32::MAX as i64), reloadable,
        "--auth-window" "SECS"
        "accepted distance of AUTH time from the server clock [default: 300]";
    /// Largest accepted frame payload (`len`), 29 (the smallest AUTH) ..=65535.
    max_frame: usize = 65_535,
        "max_frame", Int(16, 65_535), reloadable,
        "--max-frame" "BYTES"
        "largest accepted frame length, 29..65535 [default: 65535]";
    /// Most open connections on the node port; an AUTH beyond it gets code 5.
    max_connections: usize = 100_000,
        "max_connections", Int(1, 100_000_000), reloadable,
        "--max-connections" "N"
        "open connections allowed; AUTH beyond gets code 5 [default: 100000]";
    /// Bytes queued for one connection before it is dropped as not reading.
    max_write_buffer: usize = 4 << 20,
        "max_write_buffer", Int(65_536, 1 << 32), reloadable,
        "--max-write-buffer" "BYTES"
        "bytes queued for a node that does not read before it is dropped [default: 4194304]";
    /// What a duplicate login does.
    duplicate_policy: DuplicatePolicy = DuplicatePolicy::Replace,
        "duplicate_policy", Policy, reloadable,
        "--duplicate-policy" "replace|reject"
        "a second login of an online node [default: replace]";
    /// Capacity of a cross node that reports 0.
    default_capacity: u16 = 100,
        "default_capacity", Int(1, 65_535), restart,
        "--default-capacity" "N"
        "capacity of a cross node reporting 0 [default: 100]";
    /// Log verbosity.
    log_level: LogLevel = LogLevel::Info,
        "log_level", Level, reloadable,
        "--log-level" "LEVEL"
        "off|error|warn|info|debug|trace [default: info]";
    /// Directory of the durable state (journal, snapshot); `None` keeps state in memory only.
    state_dir: Option<PathBuf> = Some(PathBuf::from("state")),
        "state_dir", OptionalPath, restart,
        "--state-dir" "DIR"
        "durable state (assignments, whitelist, flags); \"\" = memory only [default: ./state]";
    /// Admin HTTP API address; `None` disables it.
    admin_listen: Option<SocketAddr> = Some(DEFAULT_ADMIN_LISTEN),
        "admin_listen", OptionalAddr("127.0.0.1:7701"), restart,
        "--admin-listen" "ADDR"
        "admin HTTP API address; \"off\" disables it [default: 127.0.0.1:7701]";
    /// Bearer token for the admin API (all but `/healthz` and `/metrics`).
    admin_token: String = DEFAULT_ADMIN_TOKEN.to_string(),
        "admin_token", Secret, reloadable,
        "--admin-token" "TOKEN"
        "admin API bearer token [default: a dev token, loopback only]";
    /// Read-only bearer token for the admin API and its console: `GET` endpoints only, every
    /// change gets 403. `None`: no viewer access.
    viewer_token: Option<String> = None,
        "viewer_token", OptionalSecret, reloadable,
        "--viewer-token" "TOKEN"
        "read-only admin API token (GET only, changes get 403); \"\" = none [default: none]";
    /// Players online at which a game node shows as busy.
    busy_threshold: u32 = 2000,
        "busy_threshold", Int(1, u32::MAX as i64), reloadable,
        "--busy-threshold" "N"
        "players online at which a game node is busy [default: 2000]";
    /// Players online at which a game node shows as full.
    full_threshold: u32 = 3000,
        "full_threshold", Int(1, u32::MAX as i64), reloadable,
        "--full-threshold" "N"
        "players online at which a game node is full [default: 3000]";
    /// Audit log of admin changes; `None` = `<state_dir>/audit.log` (no audit log without a
    /// state directory).
    audit_log: Option<PathBuf> = None,
        "audit_log", OptionalPath, restart,
        "--audit-log" "FILE"
        "audit log of admin changes [default: <state-dir>/audit.log]";
    /// Peer addresses allowed on the node port (empty = all); others get AUTH_RESULT 4.
    allow: Vec<Cidr> = Vec::new(),
        "allow", CidrList, reloadable,
        "--allow" "CIDR,.."
        "peer addresses allowed on the node port, others get AUTH code 4 [default: all]";
    /// Bad signatures or times (codes 1, 2) of one identity (address + node type + node id)
    /// within `auth_fail_window` after which its AUTHs are closed unanswered for the rest of
    /// the window; an address is closed at accept after 50 times as many failures of any
    /// counted code (1, 2, 4, 6). 0 = never.
    auth_fail_limit: u32 = 20,
        "auth_fail_limit", Int(0, 1_000_000), reloadable,
        "--auth-fail-limit" "N"
        "bad AUTHs of one node (address, type, id) before it is refused for the window; an address is refused after 50x as many; 0 = off [default: 20]";
    /// The window of `auth_fail_limit`, in seconds.
    auth_fail_window: u32 = 60,
        "auth_fail_window", Int(1, 86_400), reloadable,
        "--auth-fail-window" "SECS"
        "the window of --auth-fail-limit [default: 60]";
    /// etcd client URLs of a failover group; empty = no group (the local state directory).
    etcd: Vec<String> = Vec::new(),
        "etcd", UrlList, restart,
        "--etcd" "URLS"
        "etcd client URLs (comma-separated): join a failover group, state in etcd [default: none]";
    /// The group's key prefix in etcd.
    etcd_prefix: String = DEFAULT_ETCD_PREFIX.to_string(),
        "etcd_prefix", Prefix, restart,
        "--etcd-prefix" "PREFIX"
        "the group's key prefix in etcd [default: /login-node/default]";
    /// This member's name in the group; `None` = the node listener's host:port.
    member_name: Option<String> = None,
        "member_name", Name, restart,
        "--member-name" "NAME"
        "this member's name in the group [default: host:port of --listen]";
    /// The group lease's TTL in seconds.
    lease_ttl: u64 = 5,
        "lease_ttl", Int(2, 600), restart,
        "--lease-ttl" "SECS"
        "group lease TTL: a dead active member is replaced after about this long [default: 5]";
    /// Most operations in one etcd transaction: etcd's own `--max-txn-ops` (a larger batch is
    /// split into transactions of this size, written one after another).
    etcd_max_txn_ops: u32 = 128,
        "etcd_max_txn_ops", Int(16, 1_000_000), restart,
        "--etcd-max-txn-ops" "N"
        "most operations per etcd transaction; set to etcd's --max-txn-ops [default: 128]";
    /// Address of the players' server list (`GET /public/servers/<plat>`, no token);
    /// `None` serves it on the admin listener only.
    public_listen: Option<SocketAddr> = None,
        "public_listen", OptionalAddr("0.0.0.0:7702"), restart,
        "--public-listen" "ADDR"
        "players' server list (GET /public/servers/<plat>, no token); \"off\" = admin listener only [default: off]";
    /// `Cache-Control: max-age` of the players' server list, in seconds.
    public_max_age: u32 = 5,
        "public_max_age", Int(0, 86_400), reloadable,
        "--public-max-age" "SECS"
        "Cache-Control max-age of the players' server list [default: 5]";
    /// Days after its `open_time` during which a game server shows as `new` (0: never).
    new_server_days: u32 = 7,
        "new_server_days", Int(0, 36_500), reloadable,
        "--new-server-days" "DAYS"
        "days after open_time a game server is listed as new; 0 = never [default: 7]";
}
