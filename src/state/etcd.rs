//! A small blocking etcd v3 client, enough for one group of login nodes: leases, an election
//! key created only if absent, paged range reads at a fixed revision, and transactions fenced
//! by a compare on the election key.
//!
//! Leases and the election go through etcd's JSON gateway (`/v3/lease/*`, `/v3/kv/*`): keys
//! and values base64-encoded, 64-bit integers as decimal strings. The data (every batch's
//! transactions, the range reads of a promotion) goes through etcd's native gRPC
//! ([`super::grpc`]), where etcd spends a quarter of the CPU per key. Every call has a
//! timeout; on a connection error the next endpoint is tried, so one etcd member down costs
//! one failed attempt, not an outage.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use std::fmt;
use std::time::Duration;

/// Most operations etcd accepts in one transaction by default (its `--max-txn-ops`); a group
/// whose etcd allows more says so with `--etcd-max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;
/// Keys per page of a range read, to start with: etcd counts every key left in the range
/// for each page, so larger pages load a large state faster (100,000 game nodes and 100,000
/// whitelist entries: ~1 s at 20,000 a page, ~3.5 s at 2,000). A page over the answer limit
/// (long names) is asked for again with half as many keys.
pub const PAGE: usize = 20_000;

/// Why a call failed.
#[derive(Debug)]
pub enum EtcdError {
    /// No endpoint answered (connection refused, timeout): the outcome of a write is unknown.
    Unreachable(String),
    /// An endpoint answered with an error.
    Refused(String),
    /// The answer could not be understood.
    Bad(String),
    /// The answer was larger than the call takes (a range page: ask for fewer keys).
    TooLarge(String),
}

impl fmt::Display for EtcdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtcdError::Unreachable(e) => write!(f, "etcd unreachable: {e}"),
            EtcdError::Refused(e) => write!(f, "etcd refused: {e}"),
            EtcdError::Bad(e) => write!(f, "etcd answer not understood: {e}"),
            EtcdError::TooLarge(e) => write!(f, "etcd answer too large: {e}"),
        }
    }
}

impl std::error::Error for EtcdError {}

/// One change in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Put `key` = `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Delete `key`.
    Delete(Vec<u8>),
    /// Delete every key that starts with this.
    DeletePrefix(Vec<u8>),
}

/// Keys (with the prefix removed) and their values.
pub type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// The outcome of a campaign for the election key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Campaign {
    /// We hold the key, created at this revision (the fence of every later write).
    Won {
        /// The key's create revision.
        create_revision: i64,
    },
    /// Another member holds it.
    Lost {
        /// Its value: the holder's member name.
        holder: String,
    },
}

/// The gateway client.
pub struct Gateway {
    agent: ureq::Agent,
    /// The data's transactions and range reads, over gRPC.
    kv: super::grpc::KvClient,
    endpoints: Vec<String>,
    current: usize,
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unb64(v: &Value) -> Result<Vec<u8>, EtcdError> {
    let s = v.as_str().unwrap_or("");
    B64.decode(s)
        .map_err(|e| EtcdError::Bad(format!("base64: {e}")))
}

fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// The key just after every key that starts with `prefix` (etcd's `range_end` for a prefix).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

impl Gateway {
    /// A client for `endpoints` (`http://host:port`), each call bounded by `timeout`.
    pub fn new(endpoints: &[String], timeout: Duration) -> Gateway {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            // etcd is reached directly: an http_proxy in the environment is not for it.
            .proxy(None)
            .build();
        Gateway {
            agent: ureq::Agent::new_with_config(config),
            kv: super::grpc::KvClient::new(timeout),
            endpoints: endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            current: 0,
        }
    }

    /// POSTs `body` to `path` on the current endpoint, moving on to the next on a connection
    /// error (each endpoint tried once).
    fn call(&mut self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let text = body.to_string();
        let mut last = String::new();
        for _ in 0..self.endpoints.len().max(1) {
            let Some(base) = self.endpoints.get(self.current) else {
                return Err(EtcdError::Unreachable("no endpoints".into()));
            };
            let url = format!("{base}{path}");
            match self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(text.as_str())
            {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let answer = resp
                        .body_mut()
                        .with_config()
                        .limit(256 << 20)
                        .read_to_string()
                        .map_err(|e| EtcdError::Unreachable(format!("{url}: {e}")))?;
                    let v: Value = serde_json::from_str(&answer)
                        .map_err(|e| EtcdError::Bad(format!("{url}: {e}")))?;
                    if status != 200 || v.get("error").is_some() {
                        let msg = v
                            .get("message")
                            .or_else(|| v.get("error"))
                            .map_or_else(|| answer.clone(), |m| m.to_string());
                        // A member without a leader (election in progress) is unreachable in
                        // effect: try another.
                        if msg.contains("no leader") || status >= 500 {
                            last = format!("{url}: {status} {msg}");
                            self.current = (self.current + 1) % self.endpoints.len();
                            continue;
                        }
                        return Err(EtcdError::Refused(format!("{url}: {status} {msg}")));
                    }
                    return Ok(v);
                }
                Err(e) => {
                    last = format!("{url}: {e}");
                    self.current = (self.current + 1) % self.endpoints.len();
                }
            }
        }
        Err(EtcdError::Unreachable(last))
    }

    /// Grants a lease of `ttl` seconds; returns its id.
    pub fn grant(&mut self, ttl: u64) -> Result<i64, EtcdError> {
        let v = self.call("/v3/lease/grant", &json!({ "TTL": ttl.to_string() }))?;
        match int(&v["ID"]) {
            0 => Err(EtcdError::Bad(format!("lease grant: {v}"))),
            id => Ok(id),
        }
    }

    /// Renews a lease: its remaining TTL, or `None` when it has expired (the gateway answers
    /// an expired lease's keepalive without a TTL).
    pub fn keepalive(&mut self, lease: i64) -> Result<Option<i64>, EtcdError> {
        let v = self.call("/v3/lease/keepalive", &json!({ "ID": lease.to_string() }))?;
        let ttl = int(&v["result"]["TTL"]);
        Ok((ttl > 0).then_some(ttl))
    }

    /// Revokes a lease (its keys are deleted at once).
    pub fn revoke(&mut self, lease: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", &json!({ "ID": lease.to_string() }))
            .map(|_| ())
    }

    /// Creates `key` = `member` attached to `lease` if the key does not exist.
    pub fn campaign(
        &mut self,
        key: &[u8],
        member: &str,
        lease: i64,
    ) -> Result<Campaign, EtcdError> {
        let k = b64(key);
        let v = self.call(
            "/v3/kv/txn",
            &json!({
                "compare": [{"key": k, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
                "success": [
                    {"requestPut": {"key": k, "value": b64(member.as_bytes()), "lease": lease.to_string()}},
                    {"requestRange": {"key": k}}
                ],
                "failure": [{"requestRange": {"key": k}}],
            }),
        )?;
        let won = v["succeeded"].as_bool().unwrap_or(false);
        let responses = v["responses"].as_array().cloned().unwrap_or_default();
        let kv = responses.iter().find_map(|r| {
            r["response_range"]["kvs"]
                .as_array()
                .and_then(|a| a.first())
                .cloned()
        });
        match (won, kv) {
            (true, Some(kv)) => Ok(Campaign::Won {
                create_revision: int(&kv["create_revision"]),
            }),
            (false, Some(kv)) => Ok(Campaign::Lost {
                holder: String::from_utf8_lossy(&unb64(&kv["value"])?).into_owned(),
            }),
            // Lost, and the holder's key vanished meanwhile: try again.
            (false, None) => Ok(Campaign::Lost {
                holder: String::new(),
            }),
            (true, None) => Err(EtcdError::Bad(format!("campaign: {v}"))),
        }
    }

    /// The value of `key`, if it exists.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, EtcdError> {
        let v = self.call("/v3/kv/range", &json!({ "key": b64(key) }))?;
        match v["kvs"].as_array().and_then(|a| a.first()) {
            Some(kv) => Ok(Some(unb64(&kv["value"])?)),
            None => Ok(None),
        }
    }

    /// One page of at most `page` keys under `prefix` from `from` (a key under it; the
    /// prefix itself for the first page), read at `revision` so all pages show one
    /// consistent picture. Appends them (prefix removed) to `out`; returns where the next
    /// page starts, if any.
    pub fn range_page(
        &mut self,
        prefix: &[u8],
        from: &[u8],
        revision: i64,
        page: usize,
        out: &mut KeyValues,
    ) -> Result<Option<Vec<u8>>, EtcdError> {
        let end = prefix_end(prefix);
        let (more, last) = self.on_kv(|kv, base| {
            kv.range(base, from, &end, page as i64, revision, prefix.len(), out)
        })?;
        match (more, last) {
            (true, Some(mut next)) => {
                next.push(0); // just after the last key
                Ok(Some(next))
            }
            _ => Ok(None),
        }
    }

    /// Runs a gRPC call on the current endpoint, moving on to the next when it cannot answer
    /// (each endpoint tried once, as [`Gateway::call`] does).
    fn on_kv<T>(
        &mut self,
        mut f: impl FnMut(&mut super::grpc::KvClient, &str) -> Result<T, EtcdError>,
    ) -> Result<T, EtcdError> {
        let mut last = String::new();
        for _ in 0..self.endpoints.len().max(1) {
            let Some(base) = self.endpoints.get(self.current) else {
                return Err(EtcdError::Unreachable("no endpoints".into()));
            };
            match f(&mut self.kv, base) {
                Err(EtcdError::Unreachable(e)) => {
                    if self.endpoints.len() > 1 {
                        log::warn!("{e}; trying the next etcd endpoint");
                    }
                    last = e;
                    self.current = (self.current + 1) % self.endpoints.len();
                }
                other => return other,
            }
        }
        Err(EtcdError::Unreachable(last))
    }

    /// Applies `ops` (at most etcd's `--max-txn-ops`, less two: the order key and the
    /// whitelist version) under `prefix` if `fence` holds ([`super::grpc::Fence`]).
    pub fn fenced_txn(
        &mut self,
        fence: &super::grpc::Fence<'_>,
        prefix: &[u8],
        ops: &[TxnOp],
    ) -> Result<super::grpc::TxnOutcome, EtcdError> {
        // Through etcd's native gRPC: a quarter of the gateway's CPU per key (super::grpc).
        self.on_kv(|kv, base| kv.txn(base, fence, prefix, ops))
    }

    /// One key's last write, (revision, value), or `None` if it does not exist.
    pub fn last_write(&mut self, key: &[u8]) -> Result<Option<(i64, Vec<u8>)>, EtcdError> {
        self.on_kv(|kv, base| kv.get(base, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn an_unreachable_group_is_an_error_not_a_hang() {
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let mut gw = Gateway::new(
            &[format!("http://127.0.0.1:{port}")],
            Duration::from_secs(2),
        );
        assert!(matches!(gw.grant(5), Err(EtcdError::Unreachable(_))));
    }
}
