//! A restart keeps the whole picture (over real loopback sockets, state on disk): cross nodes
//! heard from, every game node's platform and what the server list shows of it, long names.

mod common;

use common::*;
use login_node::client::ServerMessage;
use login_node::proto::{CrossInfo, NodeType, U32List};
use serde_json::{json, Value};

#[test]
fn moves_across_platforms_are_refused_before_and_after_a_restart() {
    let dir = temp_dir("restart-plat");
    // A move of 101 to a cross node of another platform: refused.
    let refuse_move = |server: &Server| {
        let body = r#"{"serv_id": 101, "cross_server_id": 80}"#;
        admin_refused(server, "POST", "/api/assign", Some(body), 400, "platform");
    };
    {
        let server = start(durable_config(&dir));
        let (_x90, _) = server.cross(9, "p", 90, 5);
        let (_x80, _) = server.cross(8, "q", 80, 5);
        let mut g = server.game(101, "p");
        assert_eq!(expect_assign(&mut g), (90, 1));
        refuse_move(&server);
        server.stop().expect("stop");
    }
    // Nobody has reconnected: the login node still knows both platforms.
    let server = start(durable_config(&dir));
    refuse_move(&server);
    // And a returning game node is told its cross node at once, though 90 is offline.
    let mut g = server.game(101, "p");
    assert_eq!(expect_assign(&mut g), (90, 1));
    server.stop().expect("stop");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn offline_servers_stay_on_the_server_list_after_a_restart() {
    let dir = temp_dir("restart-list");
    let long_name = "名".repeat(700); // 2,100 bytes: longer than the old journal kept
    {
        let server = start(durable_config(&dir));
        let mut info = game_info(101, "p");
        info.serv_name = &long_name;
        info.addr = "10.0.0.5:8001";
        let mut c = game_node(server.addr, &info);
        assert_eq!(
            c.recv(REPLY).expect("status"),
            Some(ServerMessage::StatusPush(0))
        );
        let _unassigned_too = server.game(102, "p");
        let before = server_list(&server, "p");
        assert_eq!(before.len(), 2);
        server.stop().expect("stop");
    }
    let server = start(durable_config(&dir));
    let list = server_list(&server, "p");
    assert_eq!(
        list,
        [
            json!({"id": 101, "name": long_name, "addr": "10.0.0.5:8001",
                   "open_time": 1_690_000_000, "status": "offline"}),
            json!({"id": 102, "name": "", "addr": "127.0.0.1:1",
                   "open_time": 1_690_000_000, "status": "offline"}),
        ]
    );
    server.stop().expect("stop");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_cross_node_announcing_cross_server_id_zero_is_kicked_with_reason_5() {
    let server = start(config());
    let mut c = server.connect();
    assert_eq!(
        c.auth(NodeType::Cross, 7, "dev", TOKEN, None)
            .expect("auth")
            .code,
        0
    );
    let info = CrossInfo {
        id: 7,
        cross_plat: "p",
        cross_server_id: 0,
        cross_node_name: "cross0@127.0.0.1",
        capacity: 10,
        game_server_list: U32List::EMPTY,
    };
    c.send_cross_info(&info, &[]).expect("info");
    expect_kick(&mut c, 5);
    // Nothing else is disturbed: a proper cross node of the same platform serves games.
    let (_x, _) = server.cross(8, "p", 80, 5);
    let mut g = server.game(101, "p");
    assert_eq!(expect_assign(&mut g), (80, 1));
    server.stop().expect("stop");
}

/// `tests/fixtures/legacy-journal/journal` was written by the release before the database
/// (40 game nodes over two cross nodes through the load tool, then a whitelist add and
/// remove, maintenance for 100005, a capacity override, a drain and a move, through the
/// admin API); `expected-cross.json` is what that node's `GET /api/cross` answered then.
#[test]
fn a_state_directory_written_by_the_journal_is_migrated_on_first_start() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy-journal");
    let journal = std::fs::read(fixture.join("journal")).expect("fixture");
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture.join("expected-cross.json")).expect("fixture"),
    )
    .expect("json");
    let dir = temp_dir("migrate");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("journal"), &journal).expect("copy");

    let summary = |v: &Value| -> Vec<Value> {
        v["platforms"][0]["cross_nodes"]
            .as_array()
            .expect("cross nodes")
            .iter()
            .map(|c| {
                let members: Vec<(u64, u64)> = c["members"]
                    .as_array()
                    .expect("members")
                    .iter()
                    .map(|m| {
                        (
                            m["serv_id"].as_u64().expect("id"),
                            m["cross_pos"].as_u64().expect("pos"),
                        )
                    })
                    .collect();
                json!({"id": c["cross_server_id"], "override": c["capacity_override"],
                       "draining": c["draining"], "members": members})
            })
            .collect()
    };
    for start_no in 0..2 {
        let server = start(durable_config(&dir));
        let cross = admin(&server, "GET", "/api/cross", None, 200);
        assert_eq!(summary(&cross), summary(&expected), "start {start_no}");
        let wl = admin(&server, "GET", "/api/whitelist", None, 200);
        assert_eq!(
            (wl["version"].clone(), wl["entries"].clone()),
            (json!(4), json!(["alice", "carol"]))
        );
        let mut g = game_node(server.addr, &game_info(100005, "asia"));
        assert_eq!(
            g.recv(REPLY).expect("status"),
            Some(ServerMessage::StatusPush(1)),
            "maintenance kept"
        );
        server.stop().expect("stop");
    }
    assert!(dir.join("state.db").exists());
    assert!(!dir.join("journal").exists(), "moved aside");
    let aside: Vec<_> = std::fs::read_dir(&dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("migrated-"))
        .collect();
    assert_eq!(aside.len(), 1, "migrated once");
    assert_eq!(
        std::fs::read(aside[0].path().join("journal")).expect("kept"),
        journal
    );
    std::fs::remove_dir_all(&dir).ok();
}
