//! The binary as a newcomer first meets it: what it says at start-up, what it refuses to start
//! with, and the documented systemd install.

mod common;

use common::child::{
    connect_when_up, exit_within, free_addr, spawn_with_lines, wait_for_line, Proc,
};
use common::TOKEN;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_login-node");

/// The binary listening on `addr` with the test token, its admin API on an ephemeral port.
fn node_command(addr: SocketAddr) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", &addr.to_string()]).args([
        "--token",
        TOKEN,
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    cmd
}

#[test]
fn start_up_lines_reach_stderr_at_once_and_before_ready() {
    let dir = common::temp_dir("first-hour-ready");
    std::fs::create_dir_all(&dir).expect("dir");
    let sock_path = dir.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let started = Instant::now();
    // The development token (no --token): its warning must be seen without any node connecting.
    let (_p, lines) = spawn_with_lines(
        Command::new(BIN)
            .args(["--listen", &free_addr().to_string()])
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(["--state-dir", &dir.join("state").display().to_string()])
            .env("NOTIFY_SOCKET", &sock_path),
    );
    let within = started + Duration::from_secs(1);
    let seen = wait_for_line(&lines, "DEFAULT DEVELOPMENT TOKEN", within);
    assert!(
        seen.is_ok(),
        "no development-token warning on stderr within 1 s of start"
    );
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY datagram");
    assert!(buf[..n].starts_with(b"READY=1"));
    // Written before READY=1 was sent, so already in the pipe now.
    let listening = wait_for_line(
        &lines,
        "listening on",
        Instant::now() + Duration::from_secs(1),
    );
    assert!(listening.is_ok(), "\"listening on\" not written by READY");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_max_frame_too_small_for_any_auth_is_refused_at_start_with_the_reason() {
    let (mut p, lines) = spawn_with_lines(node_command(free_addr()).args(["--max-frame", "20"]));
    let code = exit_within(&mut p.0, Duration::from_secs(10))
        .expect("started with max_frame 20")
        .code();
    let stderr: String = lines.iter().collect::<Vec<_>>().join("\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("max_frame") && stderr.contains("AUTH"),
        "{stderr}"
    );
}

#[test]
fn the_builder_refuses_a_max_frame_too_small_for_any_auth() {
    let mut config = common::config();
    config.max_frame = 28;
    let e = login_node::LoginNode::builder()
        .config(config)
        .build()
        .err()
        .expect("refused");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("max_frame"), "{e}");
}

/// A game node online on the server at `addr`, then closed by the node.
fn one_game_session(addr: SocketAddr, id: u32, app_command: bool) {
    use login_node::client::ServerMessage;
    use login_node::proto::NodeType;
    let mut c = connect_when_up(addr);
    let r = c
        .auth(NodeType::Game, id, "dev", TOKEN, None)
        .expect("auth");
    assert_eq!(r.code, 0);
    let mut info = common::game_info(id, "pvp");
    info.serv_name = "s\"1";
    c.send_game_info(&info).expect("info");
    assert_eq!(
        c.recv(common::REPLY).expect("status"),
        Some(ServerMessage::StatusPush(0))
    );
    if app_command {
        c.send_app(0x1000, b"abc").expect("app command");
        // A heartbeat behind it: once it is answered, the command was handled.
        c.send_heartbeat(9).expect("hb");
        let r = c.recv_until(common::REPLY, |m| {
            matches!(m, ServerMessage::HeartbeatAck(9))
        });
        assert!(r.is_ok(), "heartbeat answered");
    }
}

/// A memory-only node logging at `level` (stderr lines in the channel) and one game
/// session on it, as [`one_game_session`]; the node's address.
fn one_game_session_logged_at(
    level: &str,
    id: u32,
    app_command: bool,
) -> (Proc, mpsc::Receiver<String>, SocketAddr) {
    let addr = free_addr();
    let (p, lines) =
        spawn_with_lines(node_command(addr).args(["--state-dir", "", "--log-level", level]));
    one_game_session(addr, id, app_command);
    (p, lines, addr)
}

#[test]
fn a_session_logs_one_line_online_and_one_offline_and_a_failed_auth_warns() {
    let (_p, lines, addr) = one_game_session_logged_at("info", 7, false);
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = wait_for_line(&lines, "game 7 (", deadline).expect("online line");
    let seen = seen + &wait_for_line(&lines, "offline", deadline).expect("offline line");
    let session: Vec<&str> = seen.lines().filter(|l| l.contains("game 7")).collect();
    assert_eq!(session.len(), 2, "two lines per session:\n{seen}");
    let online = session[0];
    assert!(
        online.contains("Z [INFO] game 7 (127.0.0.1:")
            && online.contains(") online: plat \"dev\" serv_name \"s\\\"1\" cross_plat \"pvp\"")
            && online.contains("addr \"127.0.0.1:1\"")
            && online.contains("reports cross 0/0"),
        "{online}"
    );
    let offline = session[1];
    assert!(
        offline.contains("Z [INFO] game 7 (127.0.0.1:")
            && offline.contains(") offline: closed by peer, online ")
            && offline.ends_with(" s"),
        "{offline}"
    );
    // A failed AUTH stays a warning with its reason.
    let mut bad = login_node::client::Client::connect(addr, common::REPLY).expect("connect");
    let r = bad
        .auth(login_node::proto::NodeType::Game, 8, "dev", "wrong", None)
        .expect("auth result");
    assert_eq!(r.code, 1);
    let refused = wait_for_line(&lines, "refused", deadline).expect("refusal line");
    assert!(
        refused.contains("[WARN] conn ")
            && refused.contains("AUTH game 8 refused: code 1 (bad signature)"),
        "{refused}"
    );
}

#[test]
fn an_app_command_dropped_for_want_of_a_handler_is_logged_at_debug() {
    let (_p, lines, _) = one_game_session_logged_at("debug", 9, true);
    let line = wait_for_line(
        &lines,
        "application command",
        Instant::now() + Duration::from_secs(10),
    )
    .expect("a debug line for the dropped command");
    assert!(
        line.contains("[DEBUG] game 9: application command 0x1000 (3 bytes) dropped: no handler"),
        "{line}"
    );
}
