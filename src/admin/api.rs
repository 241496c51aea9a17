//! The admin API's routes, sans-IO: a parsed request and the cluster in, a response (and an
//! audit line for every change) out. The reactor holds a change's response until the
//! journal records behind it are durable.

use super::http::{Request, Response};
use super::metrics::{self, IoStats};
use super::servers::platform_servers;
use super::{audit, console, nodes_page};
use crate::cluster::{
    Cluster, Handler, NodeDetails, NodeKey, NodeView, Now, OperatorError, Outbox,
};
use crate::proto::NodeType;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;

/// What the routes may touch.
pub struct Api<'a> {
    /// The cluster.
    pub cluster: &'a mut Cluster,
    /// Frames for nodes (kicks, pushes).
    pub out: &'a mut dyn Outbox,
    /// The embedder's handler (told about kicked nodes).
    pub handler: &'a mut dyn Handler,
    /// The time.
    pub now: Now,
    /// The bearer token.
    pub admin_token: &'a str,
    /// The read-only bearer token, if any.
    pub viewer_token: Option<&'a str>,
    /// The audit log, for `GET /api/audit`.
    pub audit_log: Option<&'a Path>,
    /// The reactor's counters, for `/metrics`.
    pub io: &'a IoStats,
    /// The peer of the request (audit).
    pub peer: SocketAddr,
}

/// A route's answer.
#[derive(Debug)]
pub struct Outcome {
    /// The response.
    pub response: Response,
    /// For a change: what changed, for the audit log.
    pub audit: Option<String>,
    /// For a change that journaled records: the batch that must be durable before the
    /// response goes out ([`crate::cluster::Applied::durable_at`]).
    pub durable_at: Option<u64>,
}

impl From<Response> for Outcome {
    fn from(response: Response) -> Self {
        Outcome {
            response,
            audit: None,
            durable_at: None,
        }
    }
}

/// What a request's bearer token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The admin token: everything.
    Admin,
    /// The viewer token: `GET` only.
    Viewer,
}

impl Access {
    /// The role's name, as audit lines and `GET /api/whoami` show it.
    pub fn name(self) -> &'static str {
        match self {
            Access::Admin => "admin",
            Access::Viewer => "viewer",
        }
    }
}

/// Most lines `GET /api/audit` returns.
pub const MAX_AUDIT_LINES: usize = 1000;

fn operator_error(e: OperatorError) -> Response {
    let status = match e {
        OperatorError::BadRequest(_) => 400,
        OperatorError::NotFound(_) => 404,
        OperatorError::Conflict(_) => 409,
        OperatorError::Unavailable | OperatorError::NotActive(_) => 503,
    };
    Response::error(status, e.to_string())
}

/// 200 on a single node or the active member (with `"degraded"` while state cannot be
/// written), 503 on a standby, naming the active member: a load balancer sends nodes to the
/// member that answers 200.
fn healthz(cluster: &Cluster) -> Response {
    let writable = cluster.is_writable();
    let status = if writable { "ok" } else { "degraded" };
    match cluster.role() {
        crate::cluster::Role::Standby { active } => Response::json(
            503,
            &json!({"status": "standby", "role": "standby", "active": active.as_deref(),
                    "state_writable": false}),
        ),
        role => Response::json(
            200,
            &json!({"status": status, "role": role.name(), "state_writable": writable}),
        ),
    }
}

fn authorized(req: &Request, token: &str) -> bool {
    // The scheme is case-insensitive (RFC 9110 §11.1); the token is not.
    let Some(given) = req
        .authorization
        .as_deref()
        .and_then(|v| v.split_once(' '))
        .and_then(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer").then_some(token))
    else {
        return false;
    };
    // Constant time in the token's length.
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    let mut diff = (a.len() != b.len()) as u8;
    for (i, &expected) in b.iter().enumerate() {
        diff |= a.get(i).copied().unwrap_or(0) ^ expected;
    }
    std::hint::black_box(diff) == 0
}

fn body_json(req: &Request) -> Result<Value, Response> {
    if req.body.is_empty() {
        return Err(Response::error(400, "a JSON body is required"));
    }
    serde_json::from_slice(&req.body).map_err(|e| Response::error(400, format!("bad JSON: {e}")))
}

fn field_bool(v: &Value, name: &str) -> Result<bool, Response> {
    v.get(name)
        .and_then(Value::as_bool)
        .ok_or_else(|| Response::error(400, format!("field {name:?} (true/false) is required")))
}

fn field_u64(v: &Value, name: &str, max: u64) -> Result<u64, Response> {
    match v.get(name).and_then(Value::as_u64) {
        Some(n) if n <= max => Ok(n),
        _ => Err(Response::error(
            400,
            format!("field {name:?} must be a whole number 0..={max}"),
        )),
    }
}

/// An id in a path: canonical decimal only (no sign, no leading zeros), so one node has one
/// spelling in URLs and in the audit log.
fn parse_id(s: &str) -> Result<u32, Response> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten().ok_or_else(|| {
        Response::error(
            400,
            format!("{s:?} is not an id (decimal 0..=4294967295, no sign or leading zeros)"),
        )
    })
}

fn method_not_allowed(allowed: &str) -> Outcome {
    Response::error(405, format!("method not allowed here; use {allowed}")).into()
}

/// What the request's bearer token allows (`None`: no valid token). Audit lines name it.
pub fn access(req: &Request, admin_token: &str, viewer_token: Option<&str>) -> Option<Access> {
    if authorized(req, admin_token) {
        Some(Access::Admin)
    } else if viewer_token.is_some_and(|t| authorized(req, t)) {
        Some(Access::Viewer)
    } else {
        None
    }
}

/// Answers one request.
pub fn handle(req: &Request, api: &mut Api<'_>) -> Outcome {
    let path = req.path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match (req.method.as_str(), segments.as_slice()) {
        ("GET", ["healthz"]) => return healthz(api.cluster).into(),
        ("GET", ["metrics"]) => {
            let mut text = String::with_capacity(4096);
            metrics::render(api.cluster, api.io, &mut text);
            return Response {
                status: 200,
                content_type: "text/plain; version=0.0.4",
                body: text.into_bytes(),
            }
            .into();
        }
        (_, ["healthz"]) | (_, ["metrics"]) => return method_not_allowed("GET"),
        // The console's static files: public, they hold no data.
        ("GET", [] | ["console.js" | "console.css" | "favicon.svg"]) => {
            if let Some(asset) = console::asset(req.path.as_str()) {
                return asset.into();
            }
        }
        _ => {}
    }
    let Some(access) = access(req, api.admin_token, api.viewer_token) else {
        return Response::error(401, "missing or wrong bearer token").into();
    };
    route(req, api, access, &segments)
}

fn route(req: &Request, api: &mut Api<'_>, access: Access, segments: &[&str]) -> Outcome {
    if access == Access::Viewer && req.method != "GET" {
        return Outcome {
            response: Response::error(403, "the viewer token is read-only"),
            audit: Some("refused: the viewer token is read-only".to_string()),
            durable_at: None,
        };
    }
    let result = match (req.method.as_str(), segments) {
        ("GET", ["api", "whoami"]) => {
            Ok(Response::json(200, &json!({"access": access.name()})).into())
        }
        ("GET", ["api", "audit"]) => audit_tail(req, api.audit_log).map(Outcome::from),
        (_, ["api", "whoami" | "audit"]) => Ok(method_not_allowed("GET")),
        ("GET", ["api", "nodes"]) if nodes_page::wanted(req) => {
            nodes_page::handle(req, api.cluster, api.now.mono_ms).map(Outcome::from)
        }
        ("GET", ["api", "nodes"]) => Ok(nodes(api.cluster, api.now.mono_ms).into()),
        ("GET", ["api", "cross"]) => Ok(cross(api.cluster).into()),
        ("GET", ["api", "servers"]) => servers(req, api.cluster).map(Outcome::from),
        ("GET", ["api", "whitelist"]) => Ok(whitelist(api.cluster).into()),
        ("POST", ["api", "whitelist"]) => whitelist_change(req, api, true),
        ("DELETE", ["api", "whitelist"]) => whitelist_change(req, api, false),
        (_, ["api", "whitelist"]) => Ok(method_not_allowed("GET, POST or DELETE")),
        ("PUT", ["api", "nodes", "game", id, "maintenance"]) => maintenance(req, api, id),
        ("POST", ["api", "nodes", kind, id, "kick"]) => kick(api, kind, id),
        ("PUT", ["api", "cross", id, "capacity"]) => capacity(req, api, id),
        ("PUT", ["api", "cross", id, "drain"]) => drain(req, api, id),
        ("POST", ["api", "assign"]) => assign(req, api),
        ("POST", ["api", "step-down"]) => step_down(api),
        (_, ["api", "nodes"] | ["api", "cross"] | ["api", "servers"]) => {
            Ok(method_not_allowed("GET"))
        }
        (_, ["api", "nodes", "game", _, "maintenance"])
        | (_, ["api", "cross", _, "capacity" | "drain"]) => Ok(method_not_allowed("PUT")),
        (_, ["api", "nodes", _, _, "kick"]) | (_, ["api", "assign"]) => {
            Ok(method_not_allowed("POST"))
        }
        _ => Err(Response::error(404, format!("no route {}", req.path))),
    };
    result.unwrap_or_else(Outcome::from)
}

fn audit_tail(req: &Request, path: Option<&Path>) -> Result<Response, Response> {
    let lines = match req.query_param("lines") {
        None => 100,
        Some(n) => match n.parse::<usize>() {
            Ok(n) if (1..=MAX_AUDIT_LINES).contains(&n) => n,
            _ => {
                return Err(Response::error(
                    400,
                    format!("lines must be a whole number 1..={MAX_AUDIT_LINES}"),
                ))
            }
        },
    };
    let Some(path) = path else {
        return Ok(Response::json(200, &json!({"enabled": false, "lines": []})));
    };
    let tail = audit::tail(path, lines)
        .map_err(|e| Response::error(500, format!("audit log {}: {e}", path.display())))?;
    Ok(Response::json(
        200,
        &json!({"enabled": true, "lines": tail}),
    ))
}

fn nodes(cluster: &Cluster, now_ms: u64) -> Response {
    let mut list: Vec<Value> = cluster
        .online_nodes()
        .map(|n| node_json(cluster, &n, now_ms))
        .collect();
    list.sort_by_key(|v| (v["type"].as_str().map(str::to_string), v["id"].as_u64()));
    Response::json(200, &json!({ "nodes": list }))
}

/// One online node as `GET /api/nodes` shows it.
pub(super) fn node_json(cluster: &Cluster, n: &NodeView<'_>, now_ms: u64) -> Value {
    let alloc = cluster.allocator();
    let mut v = json!({
        "type": n.key.node_type.name(),
        "id": n.key.node_id,
        "plat": n.plat,
        "peer": n.peer.to_string(),
        "connected_since": n.connected_unix,
        "last_heard_ms_ago": now_ms.saturating_sub(n.last_heard_ms),
    });
    match n.info {
        NodeDetails::Game {
            open_time,
            cross_plat,
            addr,
            players_online,
            ..
        } => {
            let rec = alloc.game(n.key.node_id);
            v["name"] = json!(rec.map_or("", |g| &*g.name));
            v["open_time"] = json!(open_time);
            v["cross_plat"] = json!(alloc.platforms.name(*cross_plat));
            v["addr"] = json!(&**addr);
            v["players_online"] = json!(players_online);
            v["assignment"] = match rec.and_then(|g| g.assignment) {
                Some((c, p)) => json!({"cross_server_id": c, "cross_pos": p}),
                None => Value::Null,
            };
            v["waiting"] = json!(rec.is_some_and(|g| g.is_waiting()));
            v["maintenance"] = json!(cluster.in_maintenance(n.key.node_id));
            v["status"] = json!(cluster.game_status(n.key.node_id).name());
        }
        NodeDetails::Cross { cross_server_id } => {
            let rec = alloc.cross(*cross_server_id);
            v["cross_server_id"] = json!(cross_server_id);
            v["name"] = json!(rec.and_then(|c| c.name.as_deref()).unwrap_or(""));
            v["capacity"] = json!(rec.map_or(0, |c| c.capacity));
            v["members"] = json!(rec.map_or(0, |c| c.members.len()));
            v["draining"] = json!(rec.is_some_and(|c| c.draining));
        }
        NodeDetails::None => {}
    }
    v
}

fn cross(cluster: &Cluster) -> Response {
    let alloc = cluster.allocator();
    let mut plats: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    let mut crosses: Vec<_> = alloc.crosses().collect();
    crosses.sort_by_key(|(id, _)| *id);
    for (id, c) in crosses {
        let plat = c.plat.map_or("", |p| alloc.platforms.name(p)).to_string();
        let members: Vec<Value> = c
            .members
            .iter()
            .map(|(&pos, &serv)| {
                json!({"serv_id": serv, "cross_pos": pos,
                       "serv_name": alloc.game(serv).map_or("", |g| &*g.name),
                       "online": alloc.game(serv).is_some_and(|g| g.online)})
            })
            .collect();
        plats.entry(plat).or_default().push(json!({
            "cross_server_id": id,
            "name": c.name.as_deref(),
            "online": c.online,
            "capacity": c.capacity,
            "capacity_override": alloc.capacity_override(id),
            "draining": c.draining,
            "free": c.free(),
            "members": members,
        }));
    }
    let mut out = Vec::new();
    let mut names: Vec<String> = plats.keys().cloned().collect();
    for plat in alloc.platform_ids() {
        let name = alloc.platforms.name(plat);
        if alloc.waiting(plat).next().is_some() && !plats.contains_key(name) {
            names.push(name.to_string());
        }
    }
    names.sort();
    names.dedup();
    for name in names {
        let waiting: Vec<u32> = alloc
            .platforms
            .get(&name)
            .map(|p| alloc.waiting(p).collect())
            .unwrap_or_default();
        out.push(json!({
            "plat": name,
            "cross_nodes": plats.remove(&name).unwrap_or_default(),
            "waiting": waiting,
        }));
    }
    Response::json(200, &json!({ "platforms": out }))
}

fn servers(req: &Request, cluster: &Cluster) -> Result<Response, Response> {
    let plat = req
        .query_param("plat")
        .ok_or_else(|| Response::error(400, "query parameter plat is required"))?;
    let list: Vec<Value> = platform_servers(cluster, &plat)
        .iter()
        .map(|e| {
            json!({"id": e.id, "name": e.name, "addr": e.addr, "open_time": e.open_time,
                   "status": e.status.name()})
        })
        .collect();
    Ok(Response::json(
        200,
        &json!({ "plat": plat, "servers": list }),
    ))
}

/// Hands the active role over at once (rolling upgrades): KICK 6 to every node, the lease
/// revoked, a standby takes over.
fn step_down(api: &mut Api<'_>) -> Result<Outcome, Response> {
    if !api.cluster.request_step_down() {
        let why = match api.cluster.role() {
            crate::cluster::Role::Single => "this login node is not in a failover group",
            _ => "this login node is not the active member",
        };
        return Err(Response::error(409, why));
    }
    Ok(Outcome {
        response: Response::json(200, &json!({"stepped_down": true})),
        audit: Some("stepped down as the active member".into()),
        durable_at: None,
    })
}

fn whitelist(cluster: &Cluster) -> Response {
    let wl = cluster.whitelist();
    let mut entries: Vec<&str> = wl.entries.iter().map(|e| &**e).collect();
    entries.sort_unstable();
    Response::json(
        200,
        &json!({"version": wl.version, "count": entries.len(), "entries": entries}),
    )
}

fn whitelist_change(req: &Request, api: &mut Api<'_>, add: bool) -> Result<Outcome, Response> {
    let body = body_json(req)?;
    if body.get("entry").is_some() && body.get("entries").is_some() {
        return Err(Response::error(
            400,
            "give either \"entry\" or \"entries\", not both",
        ));
    }
    let mut entries: Vec<&str> = Vec::new();
    if let Some(e) = body.get("entry") {
        entries.push(
            e.as_str()
                .ok_or_else(|| Response::error(400, "field \"entry\" must be a string"))?,
        );
    }
    if let Some(list) = body.get("entries") {
        let list = list
            .as_array()
            .ok_or_else(|| Response::error(400, "field \"entries\" must be a list of strings"))?;
        for e in list {
            entries.push(e.as_str().ok_or_else(|| {
                Response::error(400, "field \"entries\" must be a list of strings")
            })?);
        }
    }
    if entries.is_empty() {
        return Err(Response::error(
            400,
            "give \"entry\": \"...\" or \"entries\": [...]",
        ));
    }
    // Entries are player ids shown in logs and compared by game code: no control characters
    // (NUL, newlines, escapes) that would truncate or forge what an operator reads.
    if let Some(bad) = entries.iter().find(|e| e.chars().any(char::is_control)) {
        return Err(Response::error(
            400,
            format!("whitelist entry {bad:?} contains a control character"),
        ));
    }
    let applied = api
        .cluster
        .operator_change(|c| c.whitelist_change(&entries, add))
        .map_err(operator_error)?;
    let (changed, version) = applied.value;
    let verb = if add { "added" } else { "removed" };
    let shown: Vec<&str> = entries.iter().take(20).copied().collect();
    Ok(Outcome {
        response: Response::json(200, &json!({"changed": changed, "version": version})),
        audit: (changed > 0).then(|| {
            format!(
                "whitelist {verb} {changed} of {} requested {:?}{} -> version {version}",
                entries.len(),
                shown,
                if entries.len() > shown.len() {
                    " ..."
                } else {
                    ""
                }
            )
        }),
        durable_at: applied.durable_at,
    })
}

fn maintenance(req: &Request, api: &mut Api<'_>, id: &str) -> Result<Outcome, Response> {
    let serv = parse_id(id)?;
    let on = field_bool(&body_json(req)?, "maintenance")?;
    let applied = api
        .cluster
        .operator_change(|c| c.set_maintenance(serv, on))
        .map_err(operator_error)?;
    let changed = applied.value;
    Ok(Outcome {
        response: Response::json(
            200,
            &json!({"serv_id": serv, "maintenance": on, "changed": changed}),
        ),
        audit: changed.then(|| format!("game {serv} maintenance {on}")),
        durable_at: applied.durable_at,
    })
}

fn kick(api: &mut Api<'_>, kind: &str, id: &str) -> Result<Outcome, Response> {
    let node_type = match kind {
        "game" => NodeType::Game,
        "cross" => NodeType::Cross,
        _ => return Err(Response::error(404, "node type must be game or cross")),
    };
    let key = NodeKey {
        node_type,
        node_id: parse_id(id)?,
    };
    let applied = api
        .cluster
        .operator_change(|c| c.operator_kick(key, api.now, api.out, api.handler))
        .map_err(operator_error)?;
    Ok(Outcome {
        response: Response::json(200, &json!({"kicked": format!("{key}")})),
        audit: Some(format!("{key} kicked (KICK 3)")),
        durable_at: applied.durable_at,
    })
}

fn capacity(req: &Request, api: &mut Api<'_>, id: &str) -> Result<Outcome, Response> {
    let cross = parse_id(id)?;
    let capacity = field_u64(&body_json(req)?, "capacity", u16::MAX as u64)? as u16;
    let applied = api
        .cluster
        .operator_change(|c| c.set_cross_capacity(cross, capacity, api.out))
        .map_err(operator_error)?;
    Ok(Outcome {
        response: Response::json(
            200,
            &json!({"cross_server_id": cross, "capacity_override": capacity}),
        ),
        audit: Some(format!("cross {cross} capacity override {capacity}")),
        durable_at: applied.durable_at,
    })
}

fn drain(req: &Request, api: &mut Api<'_>, id: &str) -> Result<Outcome, Response> {
    let cross = parse_id(id)?;
    let on = field_bool(&body_json(req)?, "drain")?;
    let applied = api
        .cluster
        .operator_change(|c| c.set_cross_drain(cross, on, api.out))
        .map_err(operator_error)?;
    Ok(Outcome {
        response: Response::json(200, &json!({"cross_server_id": cross, "drain": on})),
        audit: Some(format!("cross {cross} drain {on}")),
        durable_at: applied.durable_at,
    })
}

fn assign(req: &Request, api: &mut Api<'_>) -> Result<Outcome, Response> {
    let body = body_json(req)?;
    let serv = field_u64(&body, "serv_id", u32::MAX as u64)? as u32;
    let cross = field_u64(&body, "cross_server_id", u32::MAX as u64)? as u32;
    let pos = match body.get("cross_pos") {
        None | Some(Value::Null) => 0,
        Some(_) => field_u64(&body, "cross_pos", u16::MAX as u64)? as u16,
    };
    let before = api
        .cluster
        .allocator()
        .game(serv)
        .and_then(|g| g.assignment);
    if let Some((c, p)) = before {
        if c == cross && (pos == 0 || pos == p) {
            // Already there: nothing to move, announce or audit.
            return Ok(Response::json(
                200,
                &json!({"serv_id": serv, "cross_server_id": c, "cross_pos": p, "changed": false}),
            )
            .into());
        }
    }
    let applied = api
        .cluster
        .operator_change(|c| c.move_game(serv, cross, pos, api.out))
        .map_err(operator_error)?;
    let (to, at) = applied.value;
    Ok(Outcome {
        response: Response::json(
            200,
            &json!({"serv_id": serv, "cross_server_id": to, "cross_pos": at, "changed": true}),
        ),
        audit: Some(format!(
            "game {serv} moved from {} to cross {to} slot {at}",
            before.map_or("unassigned".to_string(), |(c, p)| format!(
                "cross {c} slot {p}"
            ))
        )),
        durable_at: applied.durable_at,
    })
}
