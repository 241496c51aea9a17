//! The admin API, durable state and operator changes over real loopback sockets.

mod common;

use common::*;
use login_node::client::{Client, ServerMessage};
use login_node::proto::NodeType;
use login_node::reactor::LoginNode;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn expect_delta(c: &mut Client) -> (u32, u8, String) {
    match c.recv(REPLY).expect("delta") {
        Some(ServerMessage::WhitelistDelta { version, op, entry }) => (version, op, entry),
        other => panic!("expected WHITELIST_DELTA, got {other:?}"),
    }
}

fn expect_status(c: &mut Client) -> u8 {
    match c.recv(REPLY).expect("status") {
        Some(ServerMessage::StatusPush(m)) => m,
        other => panic!("expected STATUS_PUSH, got {other:?}"),
    }
}

/// A game node coming online, returning its client with the welcome read: (maintenance,
/// snapshot version, snapshot entries).
fn game_welcomed(server: &Server, id: u32, plat: &str) -> (Client, u8, u32, Vec<String>) {
    let mut c = game_node(server.addr, &game_info(id, plat));
    let maintenance = expect_status(&mut c);
    let mut entries = Vec::new();
    let mut frames = 0;
    loop {
        match c.recv(REPLY).expect("snapshot") {
            Some(ServerMessage::WhitelistSnapshot {
                version,
                last,
                entries: e,
            }) => {
                frames += 1;
                entries.extend(e);
                if last {
                    assert!(frames >= 1);
                    return (c, maintenance, version, entries);
                }
            }
            other => panic!("expected WHITELIST_SNAPSHOT, got {other:?}"),
        }
    }
}

fn status_of(server: &Server, plat: &str, id: u32) -> String {
    server_list(server, plat)
        .iter()
        .find(|s| s["id"] == id)
        .map(|s| s["status"].as_str().expect("status").to_string())
        .unwrap_or_default()
}

#[test]
fn operators_drive_the_cluster_and_every_change_survives_a_restart() {
    let dir = temp_dir("admin");
    let server = start(durable_config(&dir));
    let admin_addr = server.admin.expect("admin");

    // Open endpoints; everything else needs the token.
    let (status, body) = http(admin_addr, "GET", "/healthz", None, None);
    assert_eq!((status, body.contains("\"ok\"")), (200, true), "{body}");
    assert_eq!(
        http(admin_addr, "GET", "/api/nodes", None, None).0,
        401,
        "no token"
    );
    assert_eq!(
        http(admin_addr, "GET", "/api/nodes", Some("wrong"), None).0,
        401
    );

    let (mut x90, _) = server.cross(9, "p", 90, 2);
    let (mut g101, _, _, _) = game_welcomed(&server, 101, "p");
    assert_eq!(expect_assign(&mut g101), (90, 1));
    assert_eq!(expect_members(&mut x90).len(), 1);

    // Views.
    let nodes = admin(&server, "GET", "/api/nodes", None, 200);
    let list = nodes["nodes"].as_array().expect("nodes");
    assert_eq!(list.len(), 2);
    let game = list.iter().find(|n| n["type"] == "game").expect("game");
    assert_eq!(game["id"], 101);
    assert_eq!(
        game["assignment"],
        json!({"cross_server_id": 90, "cross_pos": 1})
    );
    assert_eq!(game["status"], "normal");
    assert_eq!(game["addr"], "127.0.0.1:1");
    assert!(game["peer"]
        .as_str()
        .expect("peer")
        .starts_with("127.0.0.1:"));
    let cross = admin(&server, "GET", "/api/cross", None, 200);
    let plat = &cross["platforms"][0];
    assert_eq!(plat["plat"], "p");
    assert_eq!(plat["cross_nodes"][0]["cross_server_id"], 90);
    assert_eq!(plat["cross_nodes"][0]["free"], 1);
    assert_eq!(plat["cross_nodes"][0]["members"][0]["serv_id"], 101);
    assert_eq!(status_of(&server, "p", 101), "normal");

    // Whitelist: add two, remove one; the online game node gets each delta.
    let v = admin(
        &server,
        "POST",
        "/api/whitelist",
        Some(r#"{"entries": ["alice", "bob"]}"#),
        200,
    );
    assert_eq!(v, json!({"changed": 2, "version": 2}));
    assert_eq!(expect_delta(&mut g101), (1, 1, "alice".into()));
    assert_eq!(expect_delta(&mut g101), (2, 1, "bob".into()));
    let v = admin(
        &server,
        "DELETE",
        "/api/whitelist",
        Some(r#"{"entry": "alice"}"#),
        200,
    );
    assert_eq!(v, json!({"changed": 1, "version": 3}));
    assert_eq!(expect_delta(&mut g101), (3, 2, "alice".into()));
    let v = admin(&server, "GET", "/api/whitelist", None, 200);
    assert_eq!(v["entries"], json!(["bob"]));

    // Maintenance: pushed, and the status follows.
    admin(
        &server,
        "PUT",
        "/api/nodes/game/101/maintenance",
        Some(r#"{"maintenance": true}"#),
        200,
    );
    assert_eq!(expect_status(&mut g101), 1);
    assert_eq!(status_of(&server, "p", 101), "maintenance");

    // Capacity: 90 down to 1 -> 102 waits; a second cross 80 is drained -> 102 still waits;
    // 90 up to 3 -> 102 is assigned at once.
    admin(
        &server,
        "PUT",
        "/api/cross/90/capacity",
        Some(r#"{"capacity": 1}"#),
        200,
    );
    let (mut x80, _) = server.cross(8, "p", 80, 5);
    admin(
        &server,
        "PUT",
        "/api/cross/80/drain",
        Some(r#"{"drain": true}"#),
        200,
    );
    let (mut g102, _, version, entries) = game_welcomed(&server, 102, "p");
    assert_eq!((version, entries), (3, vec!["bob".to_string()]));
    expect_quiet(&mut g102, Duration::from_millis(300));
    let cross = admin(&server, "GET", "/api/cross", None, 200);
    assert_eq!(cross["platforms"][0]["waiting"], json!([102]));
    admin(
        &server,
        "PUT",
        "/api/cross/90/capacity",
        Some(r#"{"capacity": 3}"#),
        200,
    );
    assert_eq!(expect_assign(&mut g102), (90, 2));
    while !matches!(x90.recv(REPLY).expect("members"), Some(ServerMessage::CrossMembers(m)) if m.len() == 2)
    {
    }

    // Moves: into a draining cross -> 409; undrain; move 102 to 80 slot 4.
    admin_refused(
        &server,
        "POST",
        "/api/assign",
        Some(r#"{"serv_id": 102, "cross_server_id": 80}"#),
        409,
        "draining",
    );
    admin(
        &server,
        "PUT",
        "/api/cross/80/drain",
        Some(r#"{"drain": false}"#),
        200,
    );
    let v = admin(
        &server,
        "POST",
        "/api/assign",
        Some(r#"{"serv_id": 102, "cross_server_id": 80, "cross_pos": 4}"#),
        200,
    );
    assert_eq!(
        v,
        json!({"serv_id": 102, "cross_server_id": 80, "cross_pos": 4, "changed": true})
    );
    match g102.recv(REPLY).expect("assign") {
        Some(ServerMessage::CrossAssign {
            cross_server_id: 80,
            cross_pos: 4,
            cross_node_name,
            ..
        }) => assert_eq!(cross_node_name, "cross80@127.0.0.1"),
        other => panic!("expected CROSS_ASSIGN to 80, got {other:?}"),
    }
    let members_80 = loop {
        if let Some(ServerMessage::CrossMembers(m)) = x80.recv(REPLY).expect("members") {
            break m;
        }
    };
    assert_eq!(members_80, vec![(102, String::new(), 4)]);
    let members_90 = loop {
        if let Some(ServerMessage::CrossMembers(m)) = x90.recv(REPLY).expect("members") {
            if m.len() == 1 {
                break m;
            }
        }
    };
    assert_eq!(members_90[0].0, 101);

    // Errors.
    assert_eq!(
        admin(&server, "POST", "/api/whitelist", Some("{not json"), 400)["error"]
            .as_str()
            .map(|e| e.starts_with("bad JSON")),
        Some(true)
    );
    admin(&server, "POST", "/api/whitelist", Some(r#"{"x": 1}"#), 400);
    admin(&server, "GET", "/api/nope", None, 404);
    admin(&server, "DELETE", "/api/nodes", None, 405);
    admin(&server, "POST", "/api/nodes/game/999/kick", None, 404);
    admin(
        &server,
        "PUT",
        "/api/cross/777/capacity",
        Some(r#"{"capacity": 1}"#),
        404,
    );
    admin(
        &server,
        "POST",
        "/api/assign",
        Some(r#"{"serv_id": 101, "cross_server_id": 80, "cross_pos": 4}"#),
        409,
    );

    // Kick: KICK 3.
    admin(&server, "POST", "/api/nodes/game/101/kick", None, 200);
    expect_kick(&mut g101, 3);

    // Metrics reflect it all.
    let (status, text) = http(admin_addr, "GET", "/metrics", None, None);
    assert_eq!(status, 200);
    for needle in [
        "login_node_nodes_online{type=\"cross\"} 2",
        "login_node_auth_results_total{code=\"0\"}",
        "login_node_whitelist_entries 1",
        "login_node_whitelist_version 3",
        "login_node_journal_fsync_seconds_count",
        "login_node_loop_turn_seconds_bucket",
        "login_node_assignments_total 3",
    ] {
        assert!(text.contains(needle), "metrics lack {needle:?}:\n{text}");
    }
    // One store transaction per batch locally, each counting the keys it wrote.
    let sample = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    let batches = sample("login_node_journal_fsync_seconds_count");
    assert!(batches >= 1.0);
    assert_eq!(sample("login_node_store_txn_seconds_count"), batches);
    assert_eq!(sample("login_node_store_txn_ops_count"), batches);
    assert!(
        sample("login_node_store_txn_ops_sum") >= batches,
        "every transaction wrote a key"
    );

    // The audit log has one line per change, with the peer.
    let audit = std::fs::read_to_string(dir.join("audit.log")).expect("audit log");
    for needle in [
        "POST /api/whitelist whitelist added 2",
        "DELETE /api/whitelist whitelist removed 1",
        "PUT /api/nodes/game/101/maintenance game 101 maintenance true",
        "PUT /api/cross/90/capacity cross 90 capacity override 3",
        "POST /api/assign game 102 moved from cross 90 slot 2 to cross 80 slot 4",
        "POST /api/nodes/game/101/kick game 101 kicked",
    ] {
        assert!(audit.contains(needle), "audit lacks {needle:?}:\n{audit}");
    }
    assert!(audit.lines().all(|l| l.contains(" 127.0.0.1:")), "{audit}");

    drop((x90, x80, g102));
    server.stop().expect("clean stop");

    // Restart on the same state: everything is back.
    let server = start(durable_config(&dir));
    let v = admin(&server, "GET", "/api/whitelist", None, 200);
    assert_eq!(
        (v["version"].clone(), v["entries"].clone()),
        (json!(3), json!(["bob"]))
    );
    let (mut x90, m90) = server.cross(9, "p", 90, 2);
    assert_eq!(
        m90.iter().map(|m| (m.0, m.2)).collect::<Vec<_>>(),
        [(101, 1)]
    );
    let v = admin(&server, "GET", "/api/cross", None, 200);
    let p = v["platforms"]
        .as_array()
        .expect("platforms")
        .iter()
        .find(|p| p["plat"] == "p")
        .expect("platform p")
        .clone();
    let x90_record = p["cross_nodes"]
        .as_array()
        .expect("cross nodes")
        .iter()
        .find(|c| c["cross_server_id"] == 90)
        .expect("cross 90")
        .clone();
    assert_eq!(x90_record["capacity"], 3, "override kept");
    let (mut g101, maintenance, version, _) = game_welcomed(&server, 101, "p");
    assert_eq!((maintenance, version), (1, 3));
    assert_eq!(expect_assign(&mut g101), (90, 1));
    // Cross 80 is offline, but the login node remembers its name: 102 is told at once.
    let (mut g102, _, _, _) = game_welcomed(&server, 102, "p");
    assert_eq!(expect_assign(&mut g102), (80, 4));
    let (_x80, m80) = server.cross(8, "p", 80, 5);
    assert_eq!(
        m80.iter().map(|m| (m.0, m.2)).collect::<Vec<_>>(),
        [(102, 4)]
    );
    expect_quiet(&mut g102, Duration::from_millis(200)); // the same name: nothing resent
    drop(x90.recv(Duration::from_millis(10)));
    server.stop().expect("clean stop");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_hundred_thousand_entries_reach_game_nodes_as_deltas_and_split_snapshots() {
    let dir = temp_dir("wl100k");
    let server = start(durable_config(&dir));
    let (mut online, _, _, _) = game_welcomed(&server, 1, "p");
    let entries: Vec<String> = (0..100_000).map(|i| format!("player-{i:06}")).collect();
    let body = json!({ "entries": entries }).to_string();
    let v = admin(&server, "POST", "/api/whitelist", Some(&body), 200);
    assert_eq!(v, json!({"changed": 100_000, "version": 100_000}));
    // The node that was online gets every delta, in version order.
    for (i, e) in entries.iter().enumerate() {
        let (version, op, entry) = expect_delta(&mut online);
        assert_eq!((version, op, &entry), (i as u32 + 1, 1, e));
    }
    // A node coming online now gets them as a snapshot over several frames.
    let (_late, _, version, mut got) = game_welcomed(&server, 2, "p");
    assert_eq!(version, 100_000);
    got.sort();
    assert_eq!(got, entries);
    server.stop().expect("stop");
    assert!(dir.join("state.db").exists(), "kept in the database");

    let server = start(durable_config(&dir));
    let (_again, _, version, got) = game_welcomed(&server, 3, "p");
    assert_eq!((version, got.len()), (100_000, 100_000));
    server.stop().expect("stop");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn keep_alive_serves_several_requests_and_slow_or_oversized_requests_are_cut_off() {
    let dir = temp_dir("http");
    let server = start(durable_config(&dir));
    let addr = server.admin.expect("admin");

    // Two requests on one connection.
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    for _ in 0..2 {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .expect("write");
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).expect("read");
        let (status, body) = parse_response(&buf[..n]);
        assert_eq!((status, body.contains("ok")), (200, true));
    }

    // Oversized: 413 and closed.
    let big = b"POST /api/whitelist HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n";
    assert_eq!(parse_response(&exchange(addr, big)).0, 413);

    // Garbage: 400 and closed.
    let junk = b"\x16\x03\x01\x00\xa5garbage\r\n\r\n";
    assert_eq!(parse_response(&exchange(addr, junk)).0, 400);

    // Slow headers: closed at the request deadline while the node port keeps serving.
    let mut slow = std::net::TcpStream::connect(addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    slow.write_all(b"GET /api/nodes HTTP/1.1\r\nHost:")
        .expect("write");
    let started = Instant::now();
    let mut g = server.game(5, "p");
    g.send_heartbeat(42).expect("hb");
    assert_eq!(
        g.recv(REPLY).expect("ack"),
        Some(ServerMessage::HeartbeatAck(42))
    );
    let mut rest = Vec::new();
    let n = slow.read_to_end(&mut rest).expect("closed by the server");
    assert_eq!(n, 0, "closed without an answer");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(15),
        "closed after {waited:?}"
    );
    server.stop().expect("stop");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_admin_listener_refuses_the_default_token_off_loopback() {
    let err = login_node::Config::from_args(
        ["--admin-listen", "0.0.0.0:7701", "--token", "x"].map(String::from),
    )
    .expect_err("refused");
    assert!(err.0.starts_with("admin_token:"), "{err}");
    let ok: Value = json!(login_node::Config::from_args(
        [
            "--admin-listen",
            "0.0.0.0:7701",
            "--token",
            "x",
            "--admin-token",
            "y"
        ]
        .map(String::from),
    )
    .is_ok());
    assert_eq!(ok, json!(true));
}

/// A durable node on `dir` whose journal fails (as on a full disk) while the flag is set;
/// the flag starts as `full`.
fn start_with_journal_fault(
    dir: &std::path::Path,
    full: bool,
) -> (Server, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let mut node = LoginNode::bind(durable_config(dir)).expect("bind");
    let disk_full = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(full));
    node.inject_journal_fault(disk_full.clone());
    (start_node(node), disk_full)
}

#[test]
fn a_full_disk_stops_new_assignments_and_changes_but_not_heartbeats_and_recovers() {
    use std::sync::atomic::Ordering;
    let dir = temp_dir("diskfull");
    let (server, disk_full) = start_with_journal_fault(&dir, false);
    let (_x90, _) = server.cross(9, "p", 90, 10);
    disk_full.store(true, Ordering::Relaxed);

    // 101's assignment cannot be made durable: it is not announced.
    let (mut g101, _, _, _) = game_welcomed(&server, 101, "p");
    expect_quiet(&mut g101, Duration::from_millis(300));
    // Heartbeats are served; changes are refused with 503; health says so.
    g101.send_heartbeat(5).expect("hb");
    assert_eq!(
        g101.recv(REPLY).expect("ack"),
        Some(ServerMessage::HeartbeatAck(5))
    );
    admin_refused(
        &server,
        "POST",
        "/api/whitelist",
        Some(r#"{"entry": "x"}"#),
        503,
        "not writable",
    );
    let (status, body) = http(server.admin.expect("admin"), "GET", "/healthz", None, None);
    assert_eq!(status, 200);
    assert!(body.contains("degraded"), "{body}");
    // A node arriving now waits in the queue; its welcome shows only durable state (no
    // operator change is pending), so it comes at once, and nothing after it.
    let mut g102 = game_node(server.addr, &game_info(102, "p"));
    assert_eq!(expect_status(&mut g102), 0);
    assert!(matches!(
        g102.recv(REPLY).expect("snapshot"),
        Some(ServerMessage::WhitelistSnapshot { .. })
    ));
    expect_quiet(&mut g102, Duration::from_millis(300));
    let cross = admin(&server, "GET", "/api/cross", None, 200);
    assert_eq!(cross["platforms"][0]["waiting"], json!([102]));

    // The disk recovers: both are assigned without anyone reconnecting.
    disk_full.store(false, Ordering::Relaxed);
    assert_eq!(expect_assign(&mut g101), (90, 1));
    assert_eq!(expect_assign(&mut g102), (90, 2));
    admin(
        &server,
        "POST",
        "/api/whitelist",
        Some(r#"{"entry": "x"}"#),
        200,
    );
    let (status, text) = http(server.admin.expect("admin"), "GET", "/metrics", None, None);
    assert_eq!(status, 200);
    assert!(text.contains("login_node_state_writable 1"), "{text}");
    assert!(
        !text.contains("login_node_journal_failures_total 0"),
        "{text}"
    );
    server.stop().expect("stop");

    // Both assignments are durable.
    let server = start(durable_config(&dir));
    let v = admin(&server, "GET", "/api/cross", None, 200);
    let members: Vec<u64> = v["platforms"][0]["cross_nodes"][0]["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["serv_id"].as_u64().expect("id"))
        .collect();
    assert_eq!(members, [101, 102]);
    server.stop().expect("stop");
    std::fs::remove_dir_all(&dir).ok();
}

fn metric(server: &Server, name: &str) -> u64 {
    metric_value(server, name)
}

fn metric_value<T: std::str::FromStr>(server: &Server, name: &str) -> T {
    let (_, text) = http(server.admin.expect("admin"), "GET", "/metrics", None, None);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

#[test]
fn a_burst_of_new_game_nodes_is_made_durable_with_one_group_commit() {
    let dir = temp_dir("group");
    let node = LoginNode::bind(durable_config(&dir)).expect("bind");
    let addr = node.local_addr();
    // Everything is on the wire before the loop starts: one turn reads it all.
    let mut x = Client::connect(addr, REPLY).expect("connect");
    x.send_auth(NodeType::Cross as u8, 9, "dev", TOKEN, None)
        .expect("auth");
    x.send_cross_info(
        &login_node::proto::CrossInfo {
            id: 9,
            cross_plat: "p",
            cross_server_id: 90,
            cross_node_name: "cross90@127.0.0.1",
            capacity: 200,
            game_server_list: login_node::proto::U32List::EMPTY,
        },
        &[],
    )
    .expect("info");
    let mut games: Vec<Client> = (1..=100u32)
        .map(|id| {
            let mut c = Client::connect(addr, REPLY).expect("connect");
            c.send_auth(NodeType::Game as u8, id, "dev", TOKEN, None)
                .expect("auth");
            c.send_game_info(&game_info(id, "p")).expect("info");
            c
        })
        .collect();
    let server = start_node(node);
    let mut slots: Vec<u16> = games
        .iter_mut()
        .map(|c| loop {
            if let Some(ServerMessage::CrossAssign { cross_pos, .. }) =
                c.recv(REPLY).expect("frames")
            {
                break cross_pos;
            }
        })
        .collect();
    slots.sort_unstable();
    assert_eq!(slots, (1..=100).collect::<Vec<u16>>());
    assert_eq!(metric(&server, "login_node_assignments_total"), 100);
    let fsyncs = metric(&server, "login_node_journal_fsyncs_total");
    assert!(fsyncs <= 3, "100 assignments took {fsyncs} fsyncs");
    server.stop().expect("stop");
    std::fs::remove_dir_all(&dir).ok();
}

/// Reads frames until the game node's CROSS_ASSIGN.
fn until_assigned(c: &mut Client) {
    while !matches!(
        c.recv(REPLY).expect("frames"),
        Some(ServerMessage::CrossAssign { .. })
    ) {}
}

#[test]
fn a_burst_faster_than_commits_is_committed_at_most_once_per_commit_spacing() {
    let dir = temp_dir("spacing");
    let server = start(durable_config(&dir));
    let _cross = server.cross(9, "p", 90, 3_000);
    let before = metric(&server, "login_node_journal_fsyncs_total");
    let started = Instant::now();
    // 2,000 nodes arrive one after another, faster than commits (not all in one turn): every
    // commit has records arriving behind it. Unspaced, that is a commit every few ms.
    let mut games: Vec<Client> = (1..=2_000u32)
        .map(|id| send_game(server.addr, id, "dev").expect("connect"))
        .collect();
    games.iter_mut().for_each(until_assigned);
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let fsyncs = metric(&server, "login_node_journal_fsyncs_total") - before;
    let most = elapsed_ms / login_node::reactor::COMMIT_SPACING_MS + 2;
    assert!(
        (1..=most).contains(&fsyncs),
        "2,000 arrivals over {elapsed_ms} ms took {fsyncs} commits (at most {most})"
    );
    // Commits slower than the spacing space themselves; faster ones must have waited.
    let commit_secs: f64 = metric_value(&server, "login_node_journal_fsync_seconds_sum");
    let mean_commit_ms =
        commit_secs * 1000.0 / metric(&server, "login_node_journal_fsyncs_total") as f64;
    if mean_commit_ms < 10.0 {
        let spaced = metric(&server, "login_node_journal_batches_spaced_total");
        assert!(
            spaced >= 1,
            "commits of {mean_commit_ms:.1} ms, none spaced"
        );
    }
    server.stop().expect("stop");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn changes_sent_one_at_a_time_are_committed_without_waiting_for_the_spacing() {
    let dir = temp_dir("unspaced");
    let server = start(durable_config(&dir));
    let _cross = server.cross(9, "p", 90, 1_000);
    let before = metric(&server, "login_node_journal_fsyncs_total");
    // Each client waits for its answer (held until durable) before the next change.
    for id in 1..=10u32 {
        until_assigned(&mut send_game(server.addr, id, "dev").expect("connect"));
    }
    for i in 0..5 {
        let body = format!(r#"{{"entry": "one-at-a-time-{i}"}}"#);
        admin(&server, "POST", "/api/whitelist", Some(&body), 200);
    }
    assert!(metric(&server, "login_node_journal_fsyncs_total") - before >= 15);
    // Nothing was ever waiting behind a batch in flight: no batch waited for the spacing.
    assert_eq!(
        metric(&server, "login_node_journal_batches_spaced_total"),
        0
    );
    server.stop().expect("stop");
    std::fs::remove_dir_all(&dir).ok();
}

/// Sends `POST /api/whitelist {"entry": entry}` to a node whose journal writes fail and
/// waits until the write of the batch holding the change failed.
fn whitelist_post_on_a_full_disk(server: &Server, entry: &str) -> std::net::TcpStream {
    let addr = server.admin.expect("admin");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let body = format!(r#"{{"entry": "{entry}"}}"#);
    write!(
        s,
        "POST /api/whitelist HTTP/1.1\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let deadline = Instant::now() + REPLY;
    while metric(server, "login_node_journal_failures_total") == 0 {
        assert!(Instant::now() < deadline, "the write never failed");
        std::thread::sleep(Duration::from_millis(10));
    }
    s
}

#[test]
fn a_change_is_answered_only_once_its_journal_batch_is_durable() {
    use std::sync::atomic::Ordering;
    let dir = temp_dir("held-200");
    let (server, disk_full) = start_with_journal_fault(&dir, true);
    let mut s = whitelist_post_on_a_full_disk(&server, "held");
    // The batch holding the change failed: no answer yet (a 200 now would claim a change
    // that a crash could lose).
    s.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("answered before the change was durable: {other:?}"),
    }
    s.set_nonblocking(false).expect("blocking");
    disk_full.store(false, Ordering::Relaxed);
    s.set_read_timeout(Some(REPLY)).expect("timeout");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .expect("the answer, once durable");
    let (status, text) = parse_response(&answer);
    assert_eq!(status, 200, "{text}");
    assert!(metric(&server, "login_node_journal_fsyncs_total") >= 1);
    server.stop().expect("stop");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_change_is_audited_even_if_its_client_left_before_it_was_durable() {
    use std::sync::atomic::Ordering;
    let dir = temp_dir("audit-late");
    let (server, disk_full) = start_with_journal_fault(&dir, true);
    let s = whitelist_post_on_a_full_disk(&server, "late");
    drop(s); // gone before its change is durable
    disk_full.store(false, Ordering::Relaxed);
    let deadline = Instant::now() + REPLY;
    while metric(&server, "login_node_journal_fsyncs_total") == 0 {
        assert!(Instant::now() < deadline, "the retry never succeeded");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.stop().expect("stop");
    let audit = std::fs::read_to_string(dir.join("audit.log")).expect("audit log");
    assert!(
        audit.contains("POST /api/whitelist whitelist added 1 of 1 requested [\"late\"]"),
        "{audit}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn ambiguous_or_non_canonical_admin_input_is_refused_and_a_no_op_move_changes_nothing() {
    let dir = temp_dir("admin-input");
    let server = start(durable_config(&dir));
    let (mut x90, _) = server.cross(9, "p", 90, 5);
    let (mut g101, _, _, _) = game_welcomed(&server, 101, "p");
    assert_eq!(expect_assign(&mut g101), (90, 1));
    while !matches!(x90.recv(REPLY).expect("members"), Some(ServerMessage::CrossMembers(m)) if m.len() == 1)
    {
    }

    for body in [
        r#"{"entry": 5, "entries": ["x"]}"#,
        r#"{"entry": "a", "entries": ["x"]}"#,
        r#"{"entry": 5}"#,
        r#"{"entry": "nul\u0000inside"}"#,
        r#"{"entries": ["ok", "new\nline"]}"#,
        r#"{"entry": "esc\u001b[31m"}"#,
        r#"{"entry": "del\u007f"}"#,
    ] {
        admin(&server, "POST", "/api/whitelist", Some(body), 400);
    }
    let wl = admin(&server, "GET", "/api/whitelist", None, 200);
    assert_eq!(wl["version"], 0, "nothing was applied: {wl}");

    for id in ["+101", "0101", "00", "-1", "1e2", " 101", "4294967296"] {
        let path = format!("/api/nodes/game/{id}/kick");
        admin(&server, "POST", &path, None, 400);
    }
    admin(
        &server,
        "PUT",
        "/api/nodes/game/0101/maintenance",
        Some(r#"{"maintenance": true}"#),
        400,
    );
    expect_quiet(&mut g101, Duration::from_millis(200));

    // Moving 101 to where it is: no CROSS_ASSIGN, no CROSS_MEMBERS, no audit line.
    for body in [
        r#"{"serv_id": 101, "cross_server_id": 90}"#,
        r#"{"serv_id": 101, "cross_server_id": 90, "cross_pos": 1}"#,
    ] {
        let v = admin(&server, "POST", "/api/assign", Some(body), 200);
        assert_eq!(
            v,
            json!({"serv_id": 101, "cross_server_id": 90, "cross_pos": 1, "changed": false})
        );
    }
    expect_quiet(&mut g101, Duration::from_millis(300));
    expect_quiet(&mut x90, Duration::from_millis(100));
    drop(server);
    let audit = std::fs::read_to_string(dir.join("audit.log")).unwrap_or_default();
    assert!(!audit.contains("moved"), "{audit}");
}
