//! The Rust `NodeClient` as the tests drive it: a game node's spec, fast reconnect options,
//! and waiting (bounded) for one event. Shared by the tests against a real login node and
//! against the misbehaving fake, so both drive the client the same way.
#![allow(dead_code)]

use login_node::client::machine::{NodeInfoSpec, NodeSpec};
use login_node::client::node::{ClientEvent, Options};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// Game node `id` of platform "dev", signing with the tests' token, reporting no assignment.
pub fn game_spec(id: u32) -> NodeSpec {
    NodeSpec {
        node_id: id,
        plat: "dev".into(),
        token: super::TOKEN.into(),
        info: NodeInfoSpec::Game {
            serv_name: format!("S{id}"),
            open_time: 1_700_000_000,
            cross_plat: "p".into(),
            cross_server_id: 0,
            cross_pos: 0,
            addr: "127.0.0.1:1".into(),
        },
    }
}

/// Short timeouts and backoff, so reconnects happen within a test's bounds.
pub fn fast() -> Options {
    Options {
        connect_timeout: Duration::from_secs(2),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        ..Options::default()
    }
}

/// The next event matching `want` within `within`, skipping others.
pub fn wait_for_event(
    events: &Receiver<ClientEvent>,
    what: &str,
    within: Duration,
    want: impl Fn(&ClientEvent) -> bool,
) -> ClientEvent {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(e) if want(&e) => return e,
            Ok(_) => continue,
            Err(e) => panic!("no {what} within {within:?}: {e}"),
        }
    }
}
