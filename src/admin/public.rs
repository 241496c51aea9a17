//! The players' server list (`GET /public/servers/<plat>`), sans-IO: statuses derived from
//! what the login node knows, one rendered body per platform kept until something it shows
//! changes, and HTTP answers with `ETag`, `If-None-Match` → 304 and `Cache-Control`.
//!
//! A list is rendered again only when the cluster's [`Cluster::list_generation`] moved or a
//! server's time-derived status (`upcoming` → `new` → its load status) is due to change, and
//! at most once per [`MIN_RENDER_INTERVAL_MS`] per platform: a server flapping around a
//! threshold cannot make every request render. The ETag is a hash of the body, so an
//! unchanged list keeps its ETag across renders, restarts and login nodes of one build.

use super::http::{Request, Response};
use super::servers::{platform_servers, ServerEntry};
use crate::cluster::alloc::PlatId;
use crate::cluster::{Cluster, GameStatus, Now};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;

/// The path prefix of the players' list.
pub const PREFIX: &str = "/public/servers/";
/// A platform's list is rendered at most this often (ms), however often it changes.
pub const MIN_RENDER_INTERVAL_MS: u64 = 1000;

/// A server's status as players see it, in order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PublicStatus {
    /// Not connected to the login node.
    Offline,
    /// Operator-set maintenance.
    Maintenance,
    /// Online, `open_time` still in the future.
    Upcoming,
    /// Players online at or above `full_threshold`.
    Full,
    /// Opened less than `new_server_days` ago.
    New,
    /// Players online at or above `busy_threshold`.
    Busy,
    /// Online and open.
    Normal,
}

impl PublicStatus {
    /// The lowercase name in the list.
    pub fn name(self) -> &'static str {
        match self {
            PublicStatus::Offline => "offline",
            PublicStatus::Maintenance => "maintenance",
            PublicStatus::Upcoming => "upcoming",
            PublicStatus::Full => "full",
            PublicStatus::New => "new",
            PublicStatus::Busy => "busy",
            PublicStatus::Normal => "normal",
        }
    }

    /// Online, open, not in maintenance and not full: a server a player can enter now.
    fn enterable(self) -> bool {
        matches!(
            self,
            PublicStatus::New | PublicStatus::Busy | PublicStatus::Normal
        )
    }
}

/// The settings of the players' list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicSettings {
    /// Seconds after `open_time` during which a server shows as `new` (0: never).
    pub new_server_secs: u64,
    /// `Cache-Control: public, max-age=N` of every answer.
    pub max_age_secs: u32,
}

impl PublicSettings {
    /// The settings of `config`.
    pub fn of(config: &crate::config::Config) -> Self {
        PublicSettings {
            new_server_secs: u64::from(config.new_server_days) * 86_400,
            max_age_secs: config.public_max_age,
        }
    }
}

/// A server's public status at `now_unix` (seconds).
pub fn public_status(
    status: GameStatus,
    open_time: Option<u32>,
    now_unix: u64,
    new_server_secs: u64,
) -> PublicStatus {
    let load = match status {
        GameStatus::Offline => return PublicStatus::Offline,
        GameStatus::Maintenance => return PublicStatus::Maintenance,
        GameStatus::Full => PublicStatus::Full,
        GameStatus::Busy => PublicStatus::Busy,
        GameStatus::Normal => PublicStatus::Normal,
    };
    let opened = open_time.map_or(0, u64::from);
    if now_unix < opened {
        PublicStatus::Upcoming
    } else if load != PublicStatus::Full && now_unix < opened.saturating_add(new_server_secs) {
        PublicStatus::New
    } else {
        load
    }
}

/// The first second after `now_unix` at which `open_time` alone changes a status.
fn next_boundary(open_time: Option<u32>, now_unix: u64, new_server_secs: u64) -> Option<u64> {
    let opened = u64::from(open_time?);
    let ends_new = opened.saturating_add(new_server_secs);
    [opened, ends_new].into_iter().find(|&t| t > now_unix)
}

#[derive(Serialize)]
struct Item<'a> {
    id: u32,
    name: &'a str,
    addr: Option<&'a str>,
    open_time: Option<u32>,
    status: PublicStatus,
    recommended: bool,
}

#[derive(Serialize)]
struct Body<'a> {
    plat: &'a str,
    servers: Vec<Item<'a>>,
}

/// One rendered list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The JSON body, shared by every answer that sends it.
    pub body: Arc<[u8]>,
    /// The strong ETag, quoted.
    pub etag: String,
    /// The earliest unix second at which a time-derived status changes.
    stale_at_unix: Option<u64>,
}

/// Renders the list of `entries`: every server with its public status, and `recommended`
/// on the one with the latest `open_time` (then the highest id) a player can enter now.
pub fn render(plat: &str, entries: &[ServerEntry<'_>], now_unix: u64, new_secs: u64) -> Rendered {
    let mut stale_at_unix: Option<u64> = None;
    let mut items: Vec<Item<'_>> = entries
        .iter()
        .map(|e| {
            if let Some(t) = next_boundary(e.open_time, now_unix, new_secs) {
                stale_at_unix = Some(stale_at_unix.map_or(t, |s| s.min(t)));
            }
            Item {
                id: e.id,
                name: e.name,
                addr: e.addr,
                open_time: e.open_time,
                status: public_status(e.status, e.open_time, now_unix, new_secs),
                recommended: false,
            }
        })
        .collect();
    let newest = items
        .iter_mut()
        .filter(|i| i.status.enterable())
        .max_by_key(|i| (i.open_time, i.id));
    if let Some(item) = newest {
        item.recommended = true;
    }
    let body = serde_json::to_vec(&Body {
        plat,
        servers: items,
    })
    .unwrap_or_default();
    // SipHash with std's fixed keys: the same bytes give the same tag in every process of a
    // build (a new Rust release may change it: one full download per client, no harm), and
    // 10x cheaper than MD5 on a 115 KB list.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hasher::write(&mut hasher, &body);
    let etag = format!("\"{:016x}\"", std::hash::Hasher::finish(&hasher));
    Rendered {
        body: body.into(),
        etag,
        stale_at_unix,
    }
}

struct Cached {
    list: Rendered,
    generation: u64,
    rendered_ms: u64,
}

/// The rendered lists of every platform asked for, and the answers built from them.
pub struct PublicLists {
    settings: PublicSettings,
    /// By platform id: only platforms the cluster knows are cached, so a peer asking for
    /// made-up names cannot grow this.
    cache: HashMap<PlatId, Cached>,
    renders: u64,
}

/// `If-None-Match` matches `etag` (weak comparison, as RFC 9110 asks for this header).
fn etag_matches(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|tag| {
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        tag == "*" || tag == etag
    })
}

impl PublicLists {
    /// No list rendered yet.
    pub fn new(settings: PublicSettings) -> Self {
        PublicLists {
            settings,
            cache: HashMap::new(),
            renders: 0,
        }
    }

    /// New settings (SIGHUP): lists are rendered again on their next request.
    pub fn reconfigure(&mut self, settings: PublicSettings) {
        if settings != self.settings {
            self.settings = settings;
            self.cache.clear();
        }
    }

    /// Lists rendered so far.
    pub fn renders(&self) -> u64 {
        self.renders
    }

    /// The current list of `plat`, rendered if it is out of date (and was not rendered
    /// within [`MIN_RENDER_INTERVAL_MS`]). An unknown platform gets a fresh empty list,
    /// not cached.
    pub fn list(&mut self, cluster: &Cluster, plat: &str, now: Now) -> Option<&Rendered> {
        let plat_id = cluster.allocator().platforms.get(plat)?;
        let generation = cluster.list_generation();
        let new_secs = self.settings.new_server_secs;
        let due = match self.cache.get(&plat_id) {
            None => true,
            Some(c) => {
                let stale = c.generation != generation
                    || c.list.stale_at_unix.is_some_and(|t| now.unix_secs >= t);
                stale && now.mono_ms.saturating_sub(c.rendered_ms) >= MIN_RENDER_INTERVAL_MS
            }
        };
        if due {
            let list = render(
                plat,
                &platform_servers(cluster, plat),
                now.unix_secs,
                new_secs,
            );
            self.renders += 1;
            self.cache.insert(
                plat_id,
                Cached {
                    list,
                    generation,
                    rendered_ms: now.mono_ms,
                },
            );
        }
        self.cache.get(&plat_id).map(|c| &c.list)
    }

    /// Answers a request for a path under [`PREFIX`] (or any other path, with 404): the
    /// head (or a whole error response) is appended to `out`, and the body to send after it
    /// is returned shared with the cache, so the caller can write it without copying.
    pub fn answer(
        &mut self,
        req: &Request,
        cluster: &Cluster,
        now: Now,
        keep_alive: bool,
        out: &mut Vec<u8>,
    ) -> Answer {
        let segment = req
            .path
            .strip_prefix(PREFIX)
            .map(|p| p.strip_suffix('/').unwrap_or(p));
        let plat = match segment {
            Some(p) if !p.is_empty() && !p.contains('/') => super::http::percent_decode_path(p),
            _ => {
                let e = Response::error(404, format!("no route {}; try {PREFIX}<plat>", req.path));
                e.write(keep_alive, out);
                return Answer::whole(404);
            }
        };
        let head_only = match req.method.as_str() {
            "GET" => false,
            "HEAD" => true,
            _ => {
                Response::error(405, "method not allowed here; use GET or HEAD")
                    .write(keep_alive, out);
                return Answer::whole(405);
            }
        };
        let max_age = self.settings.max_age_secs;
        let inm = req.if_none_match.as_deref();
        let Some(list) = self.list(cluster, &plat, now) else {
            // Unknown platforms are not cached: their tiny list is written whole.
            let empty = render(&plat, &[], now.unix_secs, 0);
            let status = write_head(out, &empty, inm, max_age, keep_alive);
            if status == 200 && !head_only {
                out.extend_from_slice(&empty.body);
            }
            return Answer::whole(status);
        };
        let status = write_head(out, list, inm, max_age, keep_alive);
        let body = (status == 200 && !head_only).then(|| list.body.clone());
        Answer { status, body }
    }
}

/// What [`PublicLists::answer`] wrote, and the body still to send.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The cached body to send after what was written (none for 304, HEAD and errors).
    pub body: Option<Arc<[u8]>>,
}

impl Answer {
    fn whole(status: u16) -> Self {
        Answer { status, body: None }
    }
}

/// The head of a 200, or a whole 304 when `if_none_match` matches; returns which.
fn write_head(
    out: &mut Vec<u8>,
    list: &Rendered,
    if_none_match: Option<&str>,
    max_age: u32,
    keep_alive: bool,
) -> u16 {
    let not_modified = if_none_match.is_some_and(|h| etag_matches(h, &list.etag));
    let connection = if keep_alive { "keep-alive" } else { "close" };
    // Writes into a Vec cannot fail.
    let _ = if not_modified {
        write!(out, "HTTP/1.1 304 Not Modified\r\n")
    } else {
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            list.body.len()
        )
    };
    let _ = write!(
        out,
        "ETag: {}\r\nCache-Control: public, max-age={max_age}\r\nAccess-Control-Allow-Origin: *\r\nConnection: {connection}\r\n\r\n",
        list.etag
    );
    if not_modified {
        304
    } else {
        200
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn entry(id: u32, open_time: Option<u32>, status: GameStatus) -> ServerEntry<'static> {
        ServerEntry {
            id,
            name: "s",
            addr: open_time.map(|_| "10.0.0.1:9000"),
            open_time,
            status,
        }
    }

    #[test]
    fn statuses_follow_their_precedence() {
        let now = 1_000 * DAY;
        let new = 7 * DAY;
        let open = Some((now - DAY) as u32);
        let old = Some((now - 30 * DAY) as u32);
        let soon = Some((now + 60) as u32);
        let s = |status, open_time| public_status(status, open_time, now, new);
        assert_eq!(s(GameStatus::Offline, soon), PublicStatus::Offline);
        assert_eq!(s(GameStatus::Maintenance, soon), PublicStatus::Maintenance);
        assert_eq!(s(GameStatus::Full, soon), PublicStatus::Upcoming);
        assert_eq!(s(GameStatus::Normal, soon), PublicStatus::Upcoming);
        assert_eq!(s(GameStatus::Full, open), PublicStatus::Full);
        assert_eq!(s(GameStatus::Busy, open), PublicStatus::New);
        assert_eq!(s(GameStatus::Normal, open), PublicStatus::New);
        assert_eq!(s(GameStatus::Busy, old), PublicStatus::Busy);
        assert_eq!(s(GameStatus::Normal, old), PublicStatus::Normal);
        // The edges: open at open_time, new for exactly new_server_secs, never with 0.
        let at = (now - new) as u32;
        assert_eq!(s(GameStatus::Normal, Some(now as u32)), PublicStatus::New);
        assert_eq!(s(GameStatus::Normal, Some(at)), PublicStatus::Normal);
        assert_eq!(s(GameStatus::Normal, Some(at + 1)), PublicStatus::New);
        assert_eq!(
            public_status(GameStatus::Normal, open, now, 0),
            PublicStatus::Normal
        );
    }

    fn parsed(r: &Rendered) -> serde_json::Value {
        serde_json::from_slice(&r.body).expect("json")
    }

    fn recommended(r: &Rendered) -> Vec<u64> {
        parsed(r)["servers"]
            .as_array()
            .expect("list")
            .iter()
            .filter(|s| s["recommended"] == true)
            .map(|s| s["id"].as_u64().expect("id"))
            .collect()
    }

    #[test]
    fn the_newest_enterable_server_is_recommended() {
        let now = 1_000 * DAY;
        let t = |days_ago: u64| Some((now - days_ago * DAY) as u32);
        let entries = [
            entry(1, t(100), GameStatus::Normal),
            entry(2, t(50), GameStatus::Busy),
            entry(3, t(3), GameStatus::Full),
            entry(4, t(2), GameStatus::Maintenance),
            entry(5, Some((now + 10) as u32), GameStatus::Normal),
            entry(6, None, GameStatus::Offline),
        ];
        let r = render("p", &entries, now, 7 * DAY);
        assert_eq!(recommended(&r), [2]);
        // Equal open times: the higher id.
        let r = render(
            "p",
            &[
                entry(8, t(1), GameStatus::Normal),
                entry(7, t(1), GameStatus::Normal),
            ],
            now,
            7 * DAY,
        );
        assert_eq!(recommended(&r), [8]);
        // Nothing enterable: nothing recommended.
        let r = render("p", &entries[2..], now, 7 * DAY);
        assert!(recommended(&r).is_empty());
    }

    #[test]
    fn the_body_shows_only_public_fields_and_the_etag_follows_it() {
        let now = 1_000 * DAY;
        let entries = [
            entry(2, Some(5), GameStatus::Normal),
            entry(3, None, GameStatus::Offline),
        ];
        let r = render("p", &entries, now, 7 * DAY);
        let v = parsed(&r);
        assert_eq!(v["plat"], "p");
        let first = v["servers"][0].as_object().expect("object");
        let mut keys: Vec<&str> = first.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["addr", "id", "name", "open_time", "recommended", "status"]
        );
        assert_eq!(v["servers"][1]["addr"], serde_json::Value::Null);
        assert_eq!(v["servers"][1]["status"], "offline");
        assert_eq!(r.etag.len(), 18);
        assert_eq!(
            r,
            render("p", &entries, now + 1, 7 * DAY),
            "same body, same tag"
        );
        assert_ne!(r.etag, render("p", &entries[..1], now, 7 * DAY).etag);
    }

    #[test]
    fn stale_at_is_the_next_time_boundary() {
        let now = 1_000;
        let r = render(
            "p",
            &[
                entry(1, Some(1_500), GameStatus::Normal),
                entry(2, Some(900), GameStatus::Normal),
                entry(3, Some(100), GameStatus::Normal),
            ],
            now,
            200,
        );
        // 1: opens at 1500; 2: stops being new at 1100; 3: nothing left to change.
        assert_eq!(r.stale_at_unix, Some(1_100));
        assert_eq!(next_boundary(None, now, 200), None);
    }

    #[test]
    fn if_none_match_is_a_weak_list_comparison() {
        let tag = "\"abc\"";
        assert!(etag_matches("\"abc\"", tag));
        assert!(etag_matches("W/\"abc\"", tag));
        assert!(etag_matches("\"x\", \"abc\"", tag));
        assert!(etag_matches("*", tag));
        assert!(!etag_matches("\"abcd\"", tag));
        assert!(!etag_matches("abc", tag));
        assert!(!etag_matches("", tag));
    }
}
