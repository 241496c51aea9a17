//! Shared helpers for tests that run a real login node on loopback.
#![allow(dead_code)]

pub mod child;
pub mod node_client;
pub mod process;

use login_node::client::{Client, ServerMessage};
use login_node::proto::{CrossInfo, GameInfo, NodeType, U32List};
use login_node::reactor::{LoginNode, ShutdownHandle};
pub use login_node::Config;
use login_node::Handler;
use std::io;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

pub const TOKEN: &str = "test-secret";
/// Generous bound for a reply that should come at once; a failure here means it never came.
pub const REPLY: Duration = Duration::from_secs(5);

/// A login node embedded on a thread, on an ephemeral loopback port.
pub struct Server {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// The players' server list listener (`public_listen`), if set.
    pub public: Option<SocketAddr>,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

pub fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        token: TOKEN.into(),
        heartbeat_interval: 1,
        heartbeat_timeout: 30,
        // In memory and no admin API unless a test asks: parallel tests share nothing.
        state_dir: None,
        admin_listen: None,
        ..Config::default()
    }
}

pub fn start(cfg: Config) -> Server {
    start_with(cfg, login_node::NoHandler)
}

pub fn start_with<H: Handler + Send + 'static>(cfg: Config, handler: H) -> Server {
    start_node(LoginNode::with_handler(cfg, handler).expect("bind"))
}

pub fn start_node<H: Handler + Send + 'static>(node: LoginNode<H>) -> Server {
    let addr = node.local_addr();
    let admin = node.admin_addr();
    let public = node.public_addr();
    let handle = node.shutdown_handle();
    let thread = std::thread::spawn(move || {
        let mut node = node;
        node.run()
    });
    Server {
        addr,
        admin,
        public,
        handle,
        thread: Some(thread),
    }
}

impl Server {
    /// Shuts down and returns what `run` returned.
    pub fn stop(mut self) -> io::Result<()> {
        self.handle.shutdown();
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("server thread panicked")
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr, REPLY).expect("connect")
    }

    /// A game node, authenticated and online; returns the client and the frames that
    /// followed GAME_INFO up to the whitelist snapshot.
    pub fn game(&self, id: u32, plat: &str) -> Client {
        let mut c = game_node(self.addr, &game_info(id, plat));
        assert_eq!(
            c.recv(REPLY).expect("status"),
            Some(ServerMessage::StatusPush(0))
        );
        match c.recv(REPLY).expect("snapshot") {
            Some(ServerMessage::WhitelistSnapshot { last: true, .. }) => {}
            other => panic!("expected WHITELIST_SNAPSHOT, got {other:?}"),
        }
        c
    }

    /// A cross node, online; returns the client and its first CROSS_MEMBERS.
    pub fn cross(
        &self,
        id: u32,
        plat: &str,
        cross_server_id: u32,
        capacity: u16,
    ) -> (Client, Vec<(u32, String, u16)>) {
        let mut c = logged_in(self.addr, NodeType::Cross, id);
        let name = format!("cross{cross_server_id}@127.0.0.1");
        let info = CrossInfo {
            id,
            cross_plat: plat,
            cross_server_id,
            cross_node_name: &name,
            capacity,
            game_server_list: U32List::EMPTY,
        };
        c.send_cross_info(&info, &[]).expect("info");
        match c.recv(REPLY).expect("members") {
            Some(ServerMessage::CrossMembers(m)) => (c, m),
            other => panic!("expected CROSS_MEMBERS, got {other:?}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.handle.shutdown();
            let _ = t.join();
        }
    }
}

/// A node of type `kind` at `addr`, its AUTH (platform "dev", the tests' token) accepted.
pub fn logged_in(addr: SocketAddr, kind: NodeType, id: u32) -> Client {
    let mut c = Client::connect(addr, REPLY).expect("connect");
    let r = c.auth(kind, id, "dev", TOKEN, None).expect("auth");
    assert_eq!(r.code, 0, "{kind:?} {id} auth");
    c
}

/// A game node at `addr`, logged in, `info` sent; nothing read yet.
pub fn game_node(addr: SocketAddr, info: &GameInfo) -> Client {
    let mut c = logged_in(addr, NodeType::Game, info.serv_id);
    c.send_game_info(info).expect("info");
    c
}

pub fn game_info(id: u32, plat: &str) -> GameInfo<'_> {
    GameInfo {
        serv_id: id,
        serv_name: "",
        open_time: 1_690_000_000,
        cross_plat: plat,
        cross_server_id: 0,
        cross_pos: 0,
        addr: "127.0.0.1:1",
    }
}

pub fn expect_assign(c: &mut Client) -> (u32, u16) {
    match c.recv(REPLY).expect("assign") {
        Some(ServerMessage::CrossAssign {
            cross_server_id,
            cross_pos,
            ..
        }) => (cross_server_id, cross_pos),
        other => panic!("expected CROSS_ASSIGN, got {other:?}"),
    }
}

pub fn expect_members(c: &mut Client) -> Vec<(u32, String, u16)> {
    match c.recv(REPLY).expect("members") {
        Some(ServerMessage::CrossMembers(m)) => m,
        other => panic!("expected CROSS_MEMBERS, got {other:?}"),
    }
}

pub fn expect_kick(c: &mut Client, reason: u8) {
    assert_eq!(
        c.recv(REPLY).expect("kick"),
        Some(ServerMessage::Kick(reason))
    );
    assert!(c.closed_within(REPLY), "closed after KICK {reason}");
}

/// Nothing arrives within `d` (the connection stays open and quiet).
pub fn expect_quiet(c: &mut Client, d: Duration) {
    match c.recv(d) {
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
        other => panic!("expected silence, got {other:?}"),
    }
}

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A fresh, empty directory for one test's state.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "login-node-test-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `config()` with durable state in `dir` and the admin API on an ephemeral port.
pub fn durable_config(dir: &std::path::Path) -> Config {
    Config {
        state_dir: Some(dir.to_path_buf()),
        admin_listen: Some("127.0.0.1:0".parse().expect("addr")),
        admin_token: ADMIN_TOKEN.into(),
        ..config()
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`); returns the status
/// and the body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("admin connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).expect("write head");
    s.write_all(body.as_bytes()).expect("write body");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read response");
    parse_response(&resp)
}

/// (status, body) of one whole response.
pub fn parse_response(resp: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_string())
}

/// An authorized admin request whose status must be `want`; returns the JSON body.
pub fn admin(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<&str>,
    want: u16,
) -> serde_json::Value {
    let (status, text) = http(
        server.admin.expect("admin API on"),
        method,
        path,
        Some(ADMIN_TOKEN),
        body,
    );
    assert_eq!(status, want, "{method} {path}: {text}");
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// An authorized admin request refused with status `want`, its error naming `reason`.
pub fn admin_refused(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<&str>,
    want: u16,
    reason: &str,
) {
    let v = admin(server, method, path, body, want);
    assert!(v["error"].as_str().expect("error").contains(reason), "{v}");
}

/// The servers `GET /api/servers?plat=` lists for `plat`.
pub fn server_list(server: &Server, plat: &str) -> Vec<serde_json::Value> {
    let v = admin(
        server,
        "GET",
        &format!("/api/servers?plat={plat}"),
        None,
        200,
    );
    v["servers"].as_array().expect("servers").clone()
}

/// Sends `raw` on a fresh connection and reads until the server closes it (bounded: 20 s).
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(raw).expect("write");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read until closed");
    resp
}

/// User + system CPU seconds a process has used, from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0 // USER_HZ is 100 on Linux
}

/// Resident set size of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Open file descriptors of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .count()
}

/// The bytes of a game node's AUTH frame, signed with `token`, for tests that write raw frames.
pub fn auth_frame(id: u32, plat: &str, token: &str) -> Vec<u8> {
    let time = login_node::client::unix_time();
    let mut v = Vec::new();
    login_node::proto::Auth {
        node_type: 1,
        node_id: id,
        plat,
        time,
        sign: login_node::proto::auth::sign(id, time, token.as_bytes()),
    }
    .encode(&mut v)
    .expect("fits");
    v
}

/// A cross node of platform "p" with cross_server_id = `id`, its CROSS_INFO sent (the
/// CROSS_MEMBERS that follows is left unread).
pub fn cross_node(addr: SocketAddr, id: u32) -> Client {
    let mut c = Client::connect(addr, REPLY).expect("connect");
    let r = c.auth(NodeType::Cross, id, "p", TOKEN, None).expect("auth");
    assert_eq!(r.code, 0, "cross {id} auth");
    let name = format!("cross{id}@127.0.0.1");
    let info = CrossInfo {
        id,
        cross_plat: "p",
        cross_server_id: id,
        cross_node_name: &name,
        capacity: 0,
        game_server_list: U32List::EMPTY,
    };
    c.send_cross_info(&info, &[]).expect("info");
    c
}

/// Sends a game node's AUTH (platform `plat`) and GAME_INFO (reporting no assignment)
/// without waiting for an answer; `None` if the connection failed.
pub fn send_game(addr: SocketAddr, id: u32, plat: &str) -> Option<Client> {
    let mut c = Client::connect(addr, REPLY).ok()?;
    c.send_auth(NodeType::Game as u8, id, plat, TOKEN, None)
        .ok()?;
    c.send_game_info(&game_info(id, "p")).ok()?;
    Some(c)
}

/// Every (game node, (cross_server_id, cross_pos)) in a `GET /api/cross` answer, in the
/// order listed.
pub fn cross_slots(v: &serde_json::Value) -> Vec<(u32, (u32, u16))> {
    let mut slots = Vec::new();
    for p in v["platforms"].as_array().expect("platforms") {
        for c in p["cross_nodes"].as_array().expect("cross nodes") {
            let cross = c["cross_server_id"].as_u64().expect("id") as u32;
            for m in c["members"].as_array().expect("members") {
                let serv = m["serv_id"].as_u64().expect("serv") as u32;
                let pos = m["cross_pos"].as_u64().expect("pos") as u16;
                slots.push((serv, (cross, pos)));
            }
        }
    }
    slots
}

/// Writes a raw AUTH frame on `s` and reads the AUTH_RESULT (13 bytes, bounded by
/// [`REPLY`]): its code.
pub fn raw_auth_code(s: &mut std::net::TcpStream, frame: &[u8]) -> io::Result<u8> {
    use std::io::{Read, Write};
    s.write_all(frame)?;
    s.set_read_timeout(Some(REPLY))?;
    let mut reply = [0u8; 13];
    s.read_exact(&mut reply)?;
    Ok(reply[4])
}

/// Polls `done` every 20 ms until it holds; panics naming `what` after `within`.
pub fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
