//! `GET /api/nodes` with paging and search, for the console's game-node table: one scan of
//! the online nodes picks the matching ids, and JSON is built for one page only. A page of
//! 50 among 10,000 nodes costs that scan, not the whole multi-megabyte list (which holds the
//! poll loop for as long as it takes to build).
//!
//! Query parameters (any of them asks for a page): `type` (`game` / `cross`), `q` (words,
//! each must occur, case-insensitively, in the id, name, platform, status, address or peer),
//! `status` (a game node's status, or `waiting`), `offset` (default 0), `limit` (1..=1000,
//! default 50).

use super::api::node_json;
use super::http::{Request, Response};
use crate::cluster::{Cluster, NodeDetails, NodeKey, NodeView};
use crate::proto::NodeType;
use serde_json::json;

/// Most nodes one page holds.
pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 50;

/// Whether the request asks for a page (else the whole list is answered as before).
pub fn wanted(req: &Request) -> bool {
    ["type", "q", "status", "offset", "limit"]
        .iter()
        .any(|p| req.query_param(p).is_some())
}

struct Query {
    node_type: Option<NodeType>,
    words: Vec<String>,
    status: Option<String>,
    offset: usize,
    limit: usize,
}

fn parse(req: &Request) -> Result<Query, Response> {
    let node_type = match req.query_param("type").as_deref() {
        None | Some("") => None,
        Some("game") => Some(NodeType::Game),
        Some("cross") => Some(NodeType::Cross),
        Some(_) => return Err(Response::error(400, "type must be game or cross")),
    };
    let number = |name: &str, default: usize, max: usize| match req.query_param(name) {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(Response::error(
                400,
                format!("{name} must be a whole number 0..={max}"),
            )),
        },
    };
    let offset = number("offset", 0, u32::MAX as usize)?;
    let limit = number("limit", DEFAULT_LIMIT, MAX_LIMIT)?;
    if limit == 0 {
        return Err(Response::error(
            400,
            format!("limit must be a whole number 1..={MAX_LIMIT}"),
        ));
    }
    let words = req
        .query_param("q")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let status = req.query_param("status").filter(|s| !s.is_empty());
    Ok(Query {
        node_type,
        words,
        status,
        offset,
        limit,
    })
}

/// `needle` (lowercase ASCII) occurs in `hay`, ignoring ASCII case.
fn contains_ci(hay: &str, needle: &str) -> bool {
    needle.is_empty()
        || hay
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

fn status_of(cluster: &Cluster, n: &NodeView<'_>) -> &'static str {
    match n.info {
        NodeDetails::Game { .. } => {
            let waiting = cluster
                .allocator()
                .game(n.key.node_id)
                .is_some_and(|g| g.is_waiting());
            if waiting {
                "waiting"
            } else {
                cluster.game_status(n.key.node_id).name()
            }
        }
        _ => "",
    }
}

fn matches(cluster: &Cluster, n: &NodeView<'_>, q: &Query) -> bool {
    let status = status_of(cluster, n);
    if q.status.as_deref().is_some_and(|s| s != status) {
        return false;
    }
    if q.words.is_empty() {
        return true;
    }
    let alloc = cluster.allocator();
    let (name, cross_plat, addr) = match n.info {
        NodeDetails::Game {
            cross_plat, addr, ..
        } => (
            alloc.game(n.key.node_id).map_or("", |g| &*g.name),
            alloc.platforms.name(*cross_plat),
            &**addr,
        ),
        NodeDetails::Cross { cross_server_id } => (
            alloc
                .cross(*cross_server_id)
                .and_then(|c| c.name.as_deref())
                .unwrap_or(""),
            "",
            "",
        ),
        NodeDetails::None => ("", "", ""),
    };
    let id = n.key.node_id.to_string();
    let peer = n.peer.to_string();
    let fields = [&*id, name, cross_plat, n.plat, status, addr, &*peer];
    q.words
        .iter()
        .all(|w| fields.iter().any(|f| contains_ci(f, w)))
}

/// One page of the online nodes that match the request's query.
pub fn handle(req: &Request, cluster: &Cluster, now_ms: u64) -> Result<Response, Response> {
    let q = parse(req)?;
    let mut total = 0usize;
    let mut hits: Vec<(&'static str, u32)> = Vec::new();
    for n in cluster.online_nodes() {
        if q.node_type.is_some_and(|t| t != n.key.node_type) {
            continue;
        }
        total += 1;
        if matches(cluster, &n, &q) {
            hits.push((n.key.node_type.name(), n.key.node_id));
        }
    }
    // The whole list's order: by type name, then id.
    hits.sort_unstable();
    let page: Vec<_> = hits
        .iter()
        .skip(q.offset)
        .take(q.limit)
        .filter_map(|&(kind, id)| {
            let node_type = if kind == NodeType::Game.name() {
                NodeType::Game
            } else {
                NodeType::Cross
            };
            cluster.node(NodeKey {
                node_type,
                node_id: id,
            })
        })
        .map(|n| node_json(cluster, &n, now_ms))
        .collect();
    Ok(Response::json(
        200,
        &json!({"nodes": page, "total": total, "matched": hits.len(),
                "offset": q.offset, "limit": q.limit}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive_search_is_ascii_and_bounded() {
        assert!(contains_ci("Dragon-101", "dragon"));
        assert!(contains_ci("Dragon-101", "n-10"));
        assert!(contains_ci("x", ""));
        assert!(!contains_ci("dr", "dragon"));
        assert!(!contains_ci("Drache", "dragon"));
    }
}
