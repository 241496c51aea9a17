//! The load tool against a real login node on loopback: short, bounded runs.

use login_node::{Config, LoginNode};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_login-node-bench");

/// A login node on a thread, on ephemeral loopback ports (with the players' list listener
/// if `public`).
struct Node {
    addr: String,
    public: Option<String>,
    stop: login_node::ShutdownHandle,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
}

impl Node {
    fn start(public: bool) -> Node {
        let cfg = Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            token: "tool-test".into(),
            heartbeat_interval: 1,
            heartbeat_timeout: 5,
            state_dir: None,
            admin_listen: None,
            public_listen: public.then(|| "127.0.0.1:0".parse().expect("addr")),
            ..Config::default()
        };
        let mut node = LoginNode::bind(cfg).expect("bind");
        Node {
            addr: node.local_addr().to_string(),
            public: node.public_addr().map(|a| a.to_string()),
            stop: node.shutdown_handle(),
            thread: std::thread::spawn(move || node.run()),
        }
    }

    /// Shuts the node down; its loop must end cleanly.
    fn stop(self) {
        self.stop.shutdown();
        self.thread
            .join()
            .expect("server thread")
            .expect("clean stop");
    }
}

fn run(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = Command::new(BIN).args(args).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(text.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|e| panic!("{e}: {text}"));
    (out.status.code(), json)
}

#[test]
fn every_mode_runs_clean_against_a_real_node() {
    let node = Node::start(false);
    let addr = node.addr.clone();
    let common = [
        "--addr",
        &addr,
        "--token",
        "tool-test",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--json",
        "--quiet",
    ];
    let (code, r) = run(&[&["hold", "--nodes", "60", "--cross", "3"][..], &common].concat());
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["handshakes"], 60);
    assert_eq!(r["online_at_end"], 60);
    assert!(
        r["acks"].as_u64().unwrap_or(0) > 0,
        "heartbeats answered: {r}"
    );
    let (code, r) = run(&[&["pump", "--nodes", "10", "--pipeline", "4"][..], &common].concat());
    assert_eq!(code, Some(0), "{r}");
    assert!(r["acks"].as_u64().unwrap_or(0) > 100, "{r}");
    let (code, r) = run(&[&["churn", "--workers", "4"][..], &common].concat());
    assert_eq!(code, Some(0), "{r}");
    assert!(r["sessions"].as_u64().unwrap_or(0) > 10, "{r}");
    // The server runs in this process: its CPU and RSS are ours.
    let pid = std::process::id().to_string();
    let (code, r) = run(&[
        &[
            "mixed",
            "--nodes",
            "20",
            "--pump-nodes",
            "4",
            "--workers",
            "2",
            "--procs",
            "2",
            "--server-pid",
            &pid,
        ][..],
        &common,
    ]
    .concat());
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["online_at_end"], 24, "{r}");
    assert!(
        r["server_cpu_us_per_handshake"].is_f64() && r["server_rss_growth_bytes"].is_i64(),
        "server figures merged across the worker processes: {r}"
    );
    node.stop();
}

#[test]
fn failures_are_counted_and_set_the_exit_code() {
    let node = Node::start(false);
    let addr = node.addr.clone();
    let (code, r) = run(&[
        "hold",
        "--addr",
        &addr,
        "--token",
        "wrong",
        "--nodes",
        "5",
        "--duration",
        "0.2",
        "--json",
        "--quiet",
    ]);
    assert_eq!(code, Some(1));
    assert_eq!(r["ok"], false);
    assert_eq!(r["failures"]["auth rejected: code 1"], 5, "{r}");
    node.stop();
    // Nothing listening: connect failures, counted.
    let (code, r) = run(&[
        "pump",
        "--addr",
        &addr,
        "--nodes",
        "3",
        "--duration",
        "0.2",
        "--hs-timeout",
        "1",
        "--json",
        "--quiet",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        r["failures"].as_object().is_some_and(|f| !f.is_empty()),
        "{r}"
    );
}

/// A fake login node: AUTH_RESULT 0 (1 s / 5 s), a whitelist snapshot after INFO, and then
/// heartbeats answered by `ack` (None: never answered).
fn fake_server(ack: fn(u64) -> Option<u64>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || fake_conn(stream, ack));
        }
    });
    addr
}

fn fake_conn(mut s: TcpStream, ack: fn(u64) -> Option<u64>) {
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(20)));
    let send = |s: &mut TcpStream, payload: &[u8]| {
        let mut f = (payload.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(payload);
        s.write_all(&f)
    };
    loop {
        let mut head = [0u8; 2];
        if s.read_exact(&mut head).is_err() {
            return;
        }
        let mut p = vec![0u8; u16::from_be_bytes(head) as usize];
        if s.read_exact(&mut p).is_err() || p.len() < 2 {
            return;
        }
        let reply: Option<Vec<u8>> = match [p[0], p[1]] {
            [0, 1] => Some([&[0x80, 0x01, 0][..], &0u32.to_be_bytes(), &[0, 1, 0, 5]].concat()),
            [0, 2] => Some(vec![0x80, 0x06, 0, 0, 0, 0, 1, 0, 0]),
            [0, 4] if p.len() >= 10 => {
                let ts = u64::from_be_bytes(p[2..10].try_into().expect("8 bytes"));
                ack(ts).map(|echo| [&[0x80, 0x04][..], &echo.to_be_bytes()].concat())
            }
            _ => None,
        };
        if let Some(r) = reply {
            if send(&mut s, &r).is_err() {
                return;
            }
        }
    }
}

#[test]
fn unanswered_and_wrongly_echoed_heartbeats_are_failures() {
    let hold = |addr: &str| {
        run(&[
            "hold",
            "--addr",
            addr,
            "--nodes",
            "2",
            "--hb-interval",
            "0.2",
            "--duration",
            "1",
            "--json",
            "--quiet",
        ])
    };
    let (code, r) = hold(&fake_server(|_| None));
    assert_eq!(code, Some(1), "{r}");
    assert_eq!(r["ok"], false);
    let unanswered = r["failures"]
        .as_object()
        .and_then(|f| f.iter().find(|(k, _)| k.contains("never ACKed")))
        .and_then(|(_, n)| n.as_u64());
    assert!(unanswered.is_some_and(|n| n >= 2), "{r}");

    let (code, r) = hold(&fake_server(|ts| Some(ts.wrapping_add(1))));
    assert_eq!(code, Some(1), "{r}");
    assert!(
        r["failures"]["heartbeat ACK echoed a wrong ts"].as_u64() >= Some(2),
        "{r}"
    );
    assert_eq!(r["acks"], 0, "a wrong echo is not an answer: {r}");
}

#[test]
fn public_mode_asks_for_the_list_while_nodes_heartbeat() {
    let node = Node::start(true);
    let addr = node.addr.clone();
    let public = node.public.clone().expect("public listener");
    let common = [
        "public",
        "--addr",
        &addr,
        "--token",
        "tool-test",
        "--public-addr",
        &public,
        "--nodes",
        "30",
        "--rate",
        "300",
        "--http-conns",
        "2",
        "--duration",
        "1",
        "--json",
        "--quiet",
    ];
    let (code, r) = run(&common);
    assert_eq!(code, Some(0), "{r}");
    let http = &r["http"];
    assert!(http["status_200"].as_u64().unwrap_or(0) > 50, "{r}");
    assert_eq!(http["status_304"], 0, "{r}");
    assert!(r["acks"].as_u64().unwrap_or(0) > 0, "{r}");
    let (code, r) = run(&[&common[..], &["--conditional"]].concat());
    assert_eq!(code, Some(0), "{r}");
    assert!(r["http"]["status_304"].as_u64().unwrap_or(0) > 50, "{r}");
    // Without --public-addr the mode refuses to start.
    let out = Command::new(BIN)
        .args([
            "public",
            "--addr",
            &addr,
            "--token",
            "tool-test",
            "--nodes",
            "1",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "--public-addr is required");
    node.stop();
}
