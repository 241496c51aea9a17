//! The binary as a newcomer first meets it: what it says at start-up, what it refuses to start
//! with, and the documented systemd install.

mod common;

use common::TOKEN;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_login-node");

/// A child server, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts `cmd` with stderr piped into a channel, one message per line.
fn spawn_with_lines(cmd: &mut Command) -> (Proc, mpsc::Receiver<String>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Proc(child), rx)
}

/// Lines received until one contains `needle` or `deadline` passes; `None` on timeout.
fn wait_for_line(rx: &mpsc::Receiver<String>, needle: &str, deadline: Instant) -> Option<String> {
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(needle) {
                    return Some(seen);
                }
            }
            Err(_) => return None,
        }
    }
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
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(["--state-dir", &dir.join("state").display().to_string()])
            .env("NOTIFY_SOCKET", &sock_path),
    );
    let within = started + Duration::from_secs(1);
    let seen = wait_for_line(&lines, "DEFAULT DEVELOPMENT TOKEN", within);
    assert!(
        seen.is_some(),
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
    assert!(listening.is_some(), "\"listening on\" not written by READY");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_max_frame_too_small_for_any_auth_is_refused_at_start_with_the_reason() {
    let (mut p, lines) = spawn_with_lines(
        Command::new(BIN)
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--token", TOKEN, "--admin-listen", "127.0.0.1:0"])
            .args(["--max-frame", "20"]),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = p.0.try_wait().expect("wait") {
            break status.code();
        }
        assert!(Instant::now() < deadline, "started with max_frame 20");
        std::thread::sleep(Duration::from_millis(10));
    };
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
fn one_game_session(addr: std::net::SocketAddr, id: u32, app_command: bool) {
    use login_node::client::{Client, ServerMessage};
    use login_node::proto::NodeType;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut c = loop {
        match Client::connect(addr, Duration::from_secs(1)) {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "server never came up: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
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

#[test]
fn a_session_logs_one_line_online_and_one_offline_and_a_failed_auth_warns() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let (_p, lines) = spawn_with_lines(
        Command::new(BIN)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--token", TOKEN, "--admin-listen", "127.0.0.1:0"])
            .args(["--state-dir", "", "--log-level", "info"]),
    );
    one_game_session(addr, 7, false);
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
    let port = free_port();
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let (_p, lines) = spawn_with_lines(
        Command::new(BIN)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--token", TOKEN, "--admin-listen", "127.0.0.1:0"])
            .args(["--state-dir", "", "--log-level", "debug"]),
    );
    one_game_session(addr, 9, true);
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
