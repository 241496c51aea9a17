//! The load tool against a real login node on loopback: short, bounded runs.

use login_node::{Config, LoginNode};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_login-node-bench");

fn server() -> (
    String,
    login_node::ShutdownHandle,
    std::thread::JoinHandle<std::io::Result<()>>,
) {
    let cfg = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        token: "tool-test".into(),
        heartbeat_interval: 1,
        heartbeat_timeout: 5,
        state_dir: None,
        admin_listen: None,
        ..Config::default()
    };
    let mut node = LoginNode::bind(cfg).expect("bind");
    let addr = node.local_addr().to_string();
    let stop = node.shutdown_handle();
    let t = std::thread::spawn(move || node.run());
    (addr, stop, t)
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
    let (addr, stop, t) = server();
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
        ][..],
        &common,
    ]
    .concat());
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["online_at_end"], 24, "{r}");
    stop.shutdown();
    t.join().expect("server thread").expect("clean stop");
}

#[test]
fn failures_are_counted_and_set_the_exit_code() {
    let (addr, stop, t) = server();
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
    stop.shutdown();
    t.join().expect("server thread").expect("clean stop");
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

#[test]
fn public_mode_asks_for_the_list_while_nodes_heartbeat() {
    let cfg = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        token: "tool-test".into(),
        heartbeat_interval: 1,
        heartbeat_timeout: 5,
        state_dir: None,
        admin_listen: None,
        public_listen: Some("127.0.0.1:0".parse().expect("addr")),
        ..Config::default()
    };
    let mut node = LoginNode::bind(cfg).expect("bind");
    let addr = node.local_addr().to_string();
    let public = node.public_addr().expect("public listener").to_string();
    let stop = node.shutdown_handle();
    let t = std::thread::spawn(move || node.run());
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
    stop.shutdown();
    t.join().expect("server thread").expect("clean stop");
}
