//! The embedding API against hostile handlers and bad configurations, over real sockets.

mod common;

use common::*;
use login_node::client::ServerMessage;
use login_node::{Context, Handler, LoginNode, NodeKey};
use std::time::{Duration, Instant};

/// Panics on 0x1001; on 0x1002 starts a timer that re-arms itself at 0 ms forever.
struct Hostile;

impl Handler for Hostile {
    fn app_command(&mut self, ctx: &mut Context<'_>, _from: NodeKey, cmd: u16, _body: &[u8]) {
        match cmd {
            0x1001 => panic!("hostile handler: app_command exploded"),
            0x1002 => {
                ctx.set_timer(0, 7);
            }
            _ => {}
        }
    }

    fn timer(&mut self, ctx: &mut Context<'_>, token: u64) {
        ctx.set_timer(0, token);
    }
}

#[test]
fn a_hostile_handler_neither_hangs_nor_kills_the_loop() {
    let cfg = Config {
        admin_listen: Some("127.0.0.1:0".parse().expect("addr")),
        admin_token: ADMIN_TOKEN.into(),
        ..config()
    };
    let server = start_with(cfg, Hostile);
    let mut g = server.game(1, "p");
    g.send_app(0x1002, b"").expect("app");
    g.send_app(0x1001, b"").expect("app");
    for ts in 1..=3 {
        g.send_heartbeat(ts).expect("hb");
        assert_eq!(
            g.recv(REPLY).expect("ack"),
            Some(ServerMessage::HeartbeatAck(ts)),
            "the loop still answers"
        );
    }
    let (_, text) = http(server.admin.expect("admin"), "GET", "/metrics", None, None);
    assert!(text.contains("login_node_handler_panics_total 1"), "{text}");
    // A self-re-arming timer runs once per loop turn: a shutdown still gets through.
    let t = Instant::now();
    server.stop().expect("clean shutdown");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    expect_kick(&mut g, 4);
}

#[test]
fn the_builder_refuses_what_the_binary_refuses() {
    type Spoil = fn(&mut Config);
    let bad: [(&str, Spoil); 12] = [
        ("heartbeat_interval", |c| c.heartbeat_interval = 0),
        ("heartbeat_timeout", |c| c.heartbeat_timeout = 0),
        ("token", |c| c.token = String::new()),
        ("admin_token", |c| c.admin_token = String::new()),
        ("default_capacity", |c| c.default_capacity = 0),
        ("max_connections", |c| c.max_connections = 0),
        ("auth_timeout", |c| c.auth_timeout_ms = 0),
        ("max_frame", |c| c.max_frame = 1),
        ("max_frame", |c| c.max_frame = 100_000),
        ("max_write_buffer", |c| c.max_write_buffer = 0),
        ("busy_threshold", |c| c.busy_threshold = 0),
        ("auth_fail_window", |c| c.auth_fail_window = 0),
    ];
    for (key, spoil) in bad {
        let mut cfg = config();
        spoil(&mut cfg);
        let e = match LoginNode::builder().config(cfg.clone()).build() {
            Ok(_) => panic!("the builder accepted a bad {key}"),
            Err(e) => e,
        };
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{key}: {e}");
        assert!(e.to_string().starts_with(key), "{key}: {e}");
        assert!(
            LoginNode::bind(cfg).is_err(),
            "LoginNode::bind refuses {key} too"
        );
    }
    LoginNode::builder()
        .config(config())
        .build()
        .expect("the test config itself is valid");
}
