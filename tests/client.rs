//! The reconnecting Rust node client against a real login node over loopback.

mod common;

use common::node_client::{fast, game_spec, wait_for_event};
use common::*;
use login_node::client::machine::{NodeInfoSpec, NodeSpec};
use login_node::client::node::{ClientEvent, NodeClient};
use std::sync::mpsc::Receiver;
use std::time::Duration;

fn cross_spec(id: u32) -> NodeSpec {
    NodeSpec {
        node_id: id,
        plat: "dev".into(),
        token: TOKEN.into(),
        info: NodeInfoSpec::Cross {
            cross_plat: "p".into(),
            cross_server_id: id,
            cross_node_name: format!("cross{id}@127.0.0.1"),
            capacity: 10,
            game_server_list: vec![],
        },
    }
}

/// The next event matching `want` within 10 s, skipping others.
fn wait_for(
    events: &Receiver<ClientEvent>,
    what: &str,
    want: impl Fn(&ClientEvent) -> bool,
) -> ClientEvent {
    wait_for_event(events, what, Duration::from_secs(10), want)
}

#[test]
fn the_client_stays_online_follows_the_whitelist_and_reconnects() {
    let cfg = Config {
        admin_listen: Some("127.0.0.1:0".parse().expect("addr")),
        admin_token: ADMIN_TOKEN.into(),
        heartbeat_interval: 1,
        heartbeat_timeout: 3,
        ..config()
    };
    let server = start(cfg.clone());
    let addr = server.addr;
    let (cross, cross_events) = NodeClient::start(addr, cross_spec(90), fast()).expect("start");
    wait_for(&cross_events, "cross online", |e| {
        matches!(e, ClientEvent::Online { .. })
    });
    let (game, events) = NodeClient::start(addr, game_spec(101), fast()).expect("start");
    assert_eq!(
        wait_for(&events, "online", |e| matches!(
            e,
            ClientEvent::Online { .. }
        )),
        ClientEvent::Online {
            heartbeat_interval: 1
        }
    );
    assert_eq!(
        wait_for(&events, "maintenance", |e| matches!(
            e,
            ClientEvent::Maintenance(_)
        )),
        ClientEvent::Maintenance(false)
    );
    assert_eq!(
        wait_for(&events, "assignment", |e| matches!(
            e,
            ClientEvent::CrossAssign { .. }
        )),
        ClientEvent::CrossAssign {
            cross_server_id: 90,
            cross_node_name: "cross90@127.0.0.1".into(),
            cross_plat: "p".into(),
            cross_pos: 1
        }
    );
    let members = wait_for(
        &cross_events,
        "members",
        |e| matches!(e, ClientEvent::CrossMembers(m) if !m.is_empty()),
    );
    assert_eq!(
        members,
        ClientEvent::CrossMembers(vec![(101, "S101".into(), 1)])
    );

    // Heartbeats run on the client's thread: 4 s with a 3 s timeout and it is still online.
    std::thread::sleep(Duration::from_secs(4));
    let v = admin(&server, "GET", "/api/nodes", None, 200);
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(2), "{v}");

    // Whitelist: a delta lands in the local set.
    admin(
        &server,
        "POST",
        "/api/whitelist",
        Some(r#"{"entry": "vip"}"#),
        200,
    );
    assert_eq!(
        wait_for(&events, "delta", |e| matches!(
            e,
            ClientEvent::WhitelistChanged { .. }
        )),
        ClientEvent::WhitelistChanged {
            version: 1,
            added: true,
            entry: "vip".into()
        }
    );
    assert!(game.is_whitelisted("vip") && !game.is_whitelisted("nobody"));
    assert_eq!(game.whitelist_version(), 1);

    // An operator kick: KICK 3, then the client is back on its own, snapshot included.
    admin(&server, "POST", "/api/nodes/game/101/kick", None, 200);
    assert_eq!(
        wait_for(&events, "kick", |e| matches!(e, ClientEvent::Kicked(_))),
        ClientEvent::Kicked(3)
    );
    wait_for(&events, "retry", |e| {
        matches!(e, ClientEvent::Disconnected { .. })
    });
    wait_for(&events, "back online", |e| {
        matches!(e, ClientEvent::Online { .. })
    });
    assert_eq!(
        wait_for(&events, "snapshot", |e| matches!(
            e,
            ClientEvent::WhitelistLoaded { .. }
        )),
        ClientEvent::WhitelistLoaded {
            version: 1,
            entries: 1
        }
    );

    // The login node restarts: the client retries with backoff until it is back.
    server.stop().expect("stop");
    let gone = wait_for(&events, "disconnect", |e| {
        matches!(e, ClientEvent::Disconnected { .. })
    });
    let ClientEvent::Disconnected { retry_in, .. } = gone else {
        unreachable!()
    };
    assert!(
        retry_in <= Duration::from_millis(400),
        "backoff capped: {retry_in:?}"
    );
    let _server = start(Config {
        listen: addr,
        ..cfg
    });
    wait_for(&events, "online after restart", |e| {
        matches!(e, ClientEvent::Online { .. })
    });
    wait_for(&events, "assignment after restart", |e| {
        matches!(e, ClientEvent::CrossAssign { .. })
    });

    // Application commands go out once online (here: relayed nowhere, just accepted).
    game.send_app(0x1001, b"hello");
    game.report_players(42);
    game.stop();
    assert_eq!(
        wait_for(&events, "stopped", |e| matches!(e, ClientEvent::Stopped)),
        ClientEvent::Stopped
    );
    cross.stop();
}

#[test]
fn kick_1_ends_the_client_instead_of_fighting_the_newer_login() {
    let server = start(config());
    let (_first, events) = NodeClient::start(server.addr, game_spec(7), fast()).expect("start");
    wait_for(&events, "online", |e| {
        matches!(e, ClientEvent::Online { .. })
    });
    let (_second, events2) = NodeClient::start(server.addr, game_spec(7), fast()).expect("start");
    wait_for(&events2, "second online", |e| {
        matches!(e, ClientEvent::Online { .. })
    });
    assert_eq!(
        wait_for(&events, "replaced", |e| matches!(e, ClientEvent::Kicked(_))),
        ClientEvent::Kicked(1)
    );
    assert_eq!(
        wait_for(&events, "stopped", |e| matches!(
            e,
            ClientEvent::Stopped | ClientEvent::Disconnected { .. }
        )),
        ClientEvent::Stopped
    );
}
