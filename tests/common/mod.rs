//! Shared helpers for tests that run a real login node on loopback.
#![allow(dead_code)]

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
    let node = LoginNode::with_handler(cfg, handler).expect("bind");
    let addr = node.local_addr();
    let handle = node.shutdown_handle();
    let thread = std::thread::spawn(move || {
        let mut node = node;
        node.run()
    });
    Server {
        addr,
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
        let mut c = self.connect();
        let r = c
            .auth(NodeType::Game, id, "dev", TOKEN, None)
            .expect("auth");
        assert_eq!(r.code, 0, "game {id} auth");
        c.send_game_info(&game_info(id, plat)).expect("info");
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
        let mut c = self.connect();
        let r = c
            .auth(NodeType::Cross, id, "dev", TOKEN, None)
            .expect("auth");
        assert_eq!(r.code, 0, "cross {id} auth");
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
