//! The players' server list (`GET /public/servers/<plat>`) over real loopback sockets:
//! every status, the recommendation, ETag/304, and no token while `/api/` keeps needing one.

mod common;

use common::*;
use login_node::client::{unix_time, Client, ServerMessage};
use login_node::proto::GameInfo;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const DAY: u32 = 86_400;

fn public_config() -> Config {
    Config {
        admin_listen: Some("127.0.0.1:0".parse().expect("addr")),
        admin_token: ADMIN_TOKEN.into(),
        public_listen: Some("127.0.0.1:0".parse().expect("addr")),
        busy_threshold: 10,
        full_threshold: 20,
        new_server_days: 7,
        public_max_age: 17,
        ..config()
    }
}

/// A game node online with its own name, address and open time; the welcome is read.
fn game_opening(server: &Server, id: u32, plat: &str, open_time: u32) -> Client {
    let name = format!("S{id}");
    let addr = format!("game{id}.example:9000");
    let mut c = game_node(
        server.addr,
        &GameInfo {
            serv_id: id,
            serv_name: &name,
            open_time,
            cross_plat: plat,
            cross_server_id: 0,
            cross_pos: 0,
            addr: &addr,
        },
    );
    assert!(matches!(
        c.recv(REPLY).expect("status"),
        Some(ServerMessage::StatusPush(_))
    ));
    match c.recv(REPLY).expect("snapshot") {
        Some(ServerMessage::WhitelistSnapshot { last: true, .. }) => {}
        other => panic!("expected WHITELIST_SNAPSHOT, got {other:?}"),
    }
    c
}

/// A client connection that may hold bytes of the next (pipelined) response.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(REPLY)).expect("timeout");
        Conn { s, buf: Vec::new() }
    }

    fn fill(&mut self, what: &str) {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.s.read(&mut chunk).expect(what);
        assert!(n > 0, "closed while reading the {what}");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// The next response: (status, head, body).
    fn response(&mut self, head_only: bool) -> (u16, String, Vec<u8>) {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill("head");
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).expect("utf8 head");
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("status");
        let len = if head_only || status == 304 {
            0
        } else {
            header(&head, "Content-Length")
                .and_then(|v| v.parse().ok())
                .expect("Content-Length")
        };
        while self.buf.len() < head_end + len {
            self.fill("body");
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        (status, head, body)
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// GET (or another method) on a fresh connection with extra header lines.
fn request(addr: SocketAddr, method: &str, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let mut c = Conn::open(addr);
    write!(
        c.s,
        "{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"
    )
    .expect("write");
    let response = c.response(method == "HEAD");
    assert!(c.buf.is_empty(), "nothing beyond the response");
    response
}

fn list(addr: SocketAddr, plat: &str) -> Value {
    let (status, head, body) = request(addr, "GET", &format!("/public/servers/{plat}"), "");
    assert_eq!(status, 200, "{head}");
    serde_json::from_slice(&body).expect("json")
}

/// (id, status, recommended) of every listed server.
fn statuses(v: &Value) -> Vec<(u64, String, bool)> {
    v["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|s| {
            (
                s["id"].as_u64().expect("id"),
                s["status"].as_str().expect("status").to_string(),
                s["recommended"] == true,
            )
        })
        .collect()
}

/// Asks until the list shows `want` (a change may be served up to a second late).
fn await_list(addr: SocketAddr, plat: &str, want: &[(u64, &str, bool)]) -> Value {
    let want: Vec<(u64, String, bool)> = want
        .iter()
        .map(|&(id, s, r)| (id, s.to_string(), r))
        .collect();
    let deadline = Instant::now() + REPLY;
    loop {
        let v = list(addr, plat);
        if statuses(&v) == want {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "list never became {want:?}; last {v}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_status_and_the_recommended_server() {
    let server = start(public_config());
    let public = server.public.expect("public listener");
    let now = unix_time();
    let plat = "p";
    let _g1 = game_opening(&server, 1, plat, now - 40 * DAY);
    let mut g2 = game_opening(&server, 2, plat, now - 30 * DAY);
    let mut g3 = game_opening(&server, 3, plat, now - DAY);
    let _g4 = game_opening(&server, 4, plat, now - 2 * DAY);
    let _g5 = game_opening(&server, 5, plat, now + 3_600);
    let _g6 = game_opening(&server, 6, plat, now - 3_600);
    let g7 = game_opening(&server, 7, plat, now - 50 * DAY);
    let _other = game_opening(&server, 8, "elsewhere", now);
    g2.send_status(12).expect("report");
    g3.send_status(25).expect("report");
    admin(
        &server,
        "PUT",
        "/api/nodes/game/6/maintenance",
        Some(r#"{"maintenance": true}"#),
        200,
    );
    drop(g7);
    // 4 is the newest a player can enter: 3 (full), 5 (upcoming) and 6 (maintenance) are
    // newer, 7 is gone.
    let v = await_list(
        public,
        plat,
        &[
            (1, "normal", false),
            (2, "busy", false),
            (3, "full", false),
            (4, "new", true),
            (5, "upcoming", false),
            (6, "maintenance", false),
            (7, "offline", false),
        ],
    );
    assert_eq!(v["plat"], plat);
    let four = &v["servers"][3];
    assert_eq!(four["name"], "S4");
    assert_eq!(four["addr"], "game4.example:9000");
    assert_eq!(four["open_time"], now - 2 * DAY);
    // An offline server keeps what its last GAME_INFO said (the login node's record).
    let seven = &v["servers"][6];
    assert_eq!(
        (&seven["addr"], &seven["open_time"]),
        (&json!("game7.example:9000"), &json!(now - 50 * DAY))
    );
    let text = v.to_string();
    for hidden in ["127.0.0.1", "players", "peer", "whitelist", "cross"] {
        assert!(
            !text.contains(hidden),
            "{hidden:?} is not for players: {text}"
        );
    }
    // The same list on the admin listener, without a token.
    assert_eq!(
        statuses(&list(server.admin.expect("admin"), plat)),
        statuses(&v)
    );
    // The recommendation moves when its server goes into maintenance: the newest left
    // enterable is 2 (busy counts as enterable).
    admin(
        &server,
        "PUT",
        "/api/nodes/game/4/maintenance",
        Some(r#"{"maintenance": true}"#),
        200,
    );
    await_list(
        public,
        plat,
        &[
            (1, "normal", false),
            (2, "busy", true),
            (3, "full", false),
            (4, "maintenance", false),
            (5, "upcoming", false),
            (6, "maintenance", false),
            (7, "offline", false),
        ],
    );
    // Unknown platforms are an empty list.
    assert_eq!(
        list(public, "nobody%20here"),
        serde_json::json!({"plat": "nobody here", "servers": []})
    );
}

#[test]
fn upcoming_turns_new_when_open_time_passes_and_new_can_be_turned_off() {
    let server = start(Config {
        new_server_days: 0,
        ..public_config()
    });
    let public = server.public.expect("public listener");
    let now = unix_time();
    // Opens in two seconds: upcoming, then (with new_server_days 0) normal.
    let _g = game_opening(&server, 1, "p", now + 2);
    let _old = game_opening(&server, 2, "p", now - DAY);
    assert_eq!(
        statuses(&list(public, "p")),
        [(1, "upcoming".into(), false), (2, "normal".into(), true)]
    );
    await_list(public, "p", &[(1, "normal", true), (2, "normal", false)]);
    let server = start(public_config());
    let public = server.public.expect("public listener");
    let _g = game_opening(&server, 1, "p", unix_time() + 2);
    assert_eq!(statuses(&list(public, "p"))[0].1, "upcoming");
    await_list(public, "p", &[(1, "new", true)]);
}

#[test]
fn etag_if_none_match_304_and_cache_control() {
    let server = start(public_config());
    let public = server.public.expect("public listener");
    let mut g = game_opening(&server, 1, "p", unix_time() - DAY);
    let path = "/public/servers/p";
    let (status, head, body) = request(public, "GET", path, "");
    assert_eq!(status, 200);
    assert_eq!(header(&head, "Cache-Control"), Some("public, max-age=17"));
    assert_eq!(header(&head, "Content-Type"), Some("application/json"));
    let etag = header(&head, "ETag").expect("ETag").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    // Conditional requests on one keep-alive connection, pipelined.
    let mut c = Conn::open(public);
    let mut batch = String::new();
    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        "\"other\"".into(),
        "*".into(),
    ] {
        batch.push_str(&format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\nIf-None-Match: {inm}\r\n\r\n"
        ));
    }
    batch.push_str(&format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
    c.s.write_all(batch.as_bytes()).expect("write");
    for want in [304, 304, 200, 304] {
        let (status, head, got) = c.response(false);
        assert_eq!(status, want, "{head}");
        assert_eq!(header(&head, "ETag"), Some(etag.as_str()));
        assert_eq!(header(&head, "Cache-Control"), Some("public, max-age=17"));
        if status == 304 {
            assert_eq!(header(&head, "Content-Length"), None, "{head}");
        } else {
            assert_eq!(got, body);
        }
    }
    let (status, head, _) = c.response(true);
    assert_eq!(status, 200);
    assert_eq!(
        header(&head, "Content-Length"),
        Some(body.len().to_string().as_str())
    );
    // A change makes a new tag; the old one then gets the whole list.
    // Busy would not show (new wins over busy); full does.
    g.send_status(15).expect("report");
    g.send_status(25).expect("report");
    let deadline = Instant::now() + REPLY;
    let (head, changed) = loop {
        let (status, head, got) =
            request(public, "GET", path, &format!("If-None-Match: {etag}\r\n"));
        if status == 200 {
            break (head, got);
        }
        assert_eq!(status, 304);
        assert!(Instant::now() < deadline, "the change never showed");
        std::thread::sleep(Duration::from_millis(20));
    };
    let new_tag = header(&head, "ETag").expect("ETag");
    assert_ne!(new_tag, etag);
    let v: Value = serde_json::from_slice(&changed).expect("json");
    assert_eq!(v["servers"][0]["status"], "full");
    let (status, _, _) = request(
        public,
        "GET",
        path,
        &format!("If-None-Match: {new_tag}\r\n"),
    );
    assert_eq!(status, 304);
}

#[test]
fn no_token_needed_while_every_api_path_still_requires_one() {
    let server = start(public_config());
    let admin_addr = server.admin.expect("admin");
    let public = server.public.expect("public listener");
    let _g = game_opening(&server, 1, "p", unix_time() - DAY);
    for addr in [public, admin_addr] {
        let (status, head, _) = request(addr, "GET", "/public/servers/p", "");
        assert_eq!(status, 200, "{head}");
        let (status, _, _) = request(addr, "POST", "/public/servers/p", "");
        assert_eq!(status, 405);
        for other in [
            "/public",
            "/public/",
            "/public/other",
            "/public/servers/p/x",
        ] {
            assert_eq!(request(addr, "GET", other, "").0, 404, "{other}");
        }
    }
    let routes = [
        ("GET", "/api/nodes"),
        ("GET", "/api/cross"),
        ("GET", "/api/servers?plat=p"),
        ("GET", "/api/whitelist"),
        ("POST", "/api/whitelist"),
        ("DELETE", "/api/whitelist"),
        ("PUT", "/api/nodes/game/1/maintenance"),
        ("POST", "/api/nodes/game/1/kick"),
        ("POST", "/api/nodes/cross/1/kick"),
        ("PUT", "/api/cross/1/capacity"),
        ("PUT", "/api/cross/1/drain"),
        ("POST", "/api/assign"),
        ("GET", "/api/no-such-route"),
    ];
    for (method, path) in routes {
        for auth in ["", "Authorization: Bearer wrong\r\n"] {
            let (status, head, _) = request(admin_addr, method, path, auth);
            assert_eq!(status, 401, "{method} {path} {auth:?}: {head}");
        }
        // The public listener serves the list only, token or not.
        let auth = format!("Authorization: Bearer {ADMIN_TOKEN}\r\n");
        let (status, _, _) = request(public, method, path, &auth);
        assert_eq!(status, 404, "{method} {path} on the public listener");
    }
    for path in ["/healthz", "/metrics"] {
        assert_eq!(request(public, "GET", path, "").0, 404, "{path}");
    }
    // With the token the admin API still works (the game is still online).
    let v = admin(&server, "GET", "/api/nodes", None, 200);
    assert_eq!(v["nodes"][0]["id"], 1);
    // Public heads are small: 16 KiB at most, no bodies to buffer.
    let mut c = Conn::open(public);
    let big = format!(
        "GET /public/servers/p HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n{}",
        "a".repeat(20_000)
    );
    let _ = c.s.write_all(big.as_bytes());
    let (status, _, _) = c.response(false);
    assert_eq!(status, 413);
    let metrics = http(admin_addr, "GET", "/metrics", None, None).1;
    assert!(
        metrics.contains("login_node_public_requests_total "),
        "{metrics}"
    );
}

#[test]
fn a_large_list_arrives_whole_pipelined_and_to_a_slow_reader() {
    let server = start(public_config());
    let public = server.public.expect("public listener");
    let now = unix_time();
    let _games: Vec<Client> = (1..=500)
        .map(|id| game_opening(&server, id, "big", now - 30 * DAY))
        .collect();
    let mut c = Conn::open(public);
    let get = "GET /public/servers/big HTTP/1.1\r\nHost: t\r\n\r\n";
    c.s.write_all(get.repeat(3).as_bytes()).expect("write");
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let (status, head, body) = c.response(false);
        assert_eq!(status, 200, "{head}");
        bodies.push(body);
    }
    assert!(bodies[0].len() > 48 << 10, "{} bytes", bodies[0].len());
    assert!(bodies.iter().all(|b| *b == bodies[0]));
    let v: Value = serde_json::from_slice(&bodies[0]).expect("json");
    let ids: Vec<u64> = statuses(&v).iter().map(|s| s.0).collect();
    assert_eq!(ids, (1..=500).collect::<Vec<u64>>());
    // A client with a tiny receive window: answers queue behind each other and arrive whole.
    let s =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.set_recv_buffer_size(4096).expect("rcvbuf");
    s.connect(&public.into()).expect("connect");
    let mut slow = Conn {
        s: s.into(),
        buf: Vec::new(),
    };
    slow.s.set_read_timeout(Some(REPLY)).expect("timeout");
    // 60 answers (~3.5 MB) are more than the socket buffers hold: most wait as shared
    // tails while the client reads slowly.
    slow.s.write_all(get.repeat(60).as_bytes()).expect("write");
    for i in 0..60 {
        let (status, _, body) = slow.response(false);
        assert_eq!(status, 200, "answer {i}");
        assert_eq!(body, bodies[0], "answer {i}");
    }
}
