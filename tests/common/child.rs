//! Child processes of the tests and the ports they listen on: a child killed on drop, free
//! loopback ports, signals, stderr read line by line, and waiting (bounded) for an exit.
//! Separate from `process.rs`, which is one configured `login-node` server: these are the
//! pieces every test that spawns something (the binary, etcd, setpriv) needs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A child process, killed (and reaped) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback address no one listens on right now (the kernel's pick).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

/// A loopback port no one listens on right now.
pub fn free_port() -> u16 {
    free_addr().port()
}

/// `n` distinct loopback ports no one listens on now, below the kernel's ephemeral range: a
/// port the kernel picked for a listener can meanwhile be picked as the source port of some
/// other test's outgoing connection, and then a server started on it later cannot listen
/// (an etcd member so started never became healthy). All `n` are held until all are found.
pub fn free_ports_outside_ephemeral(n: usize) -> Vec<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768)
        .clamp(12_000, 65_535);
    let span = low - 10_000;
    let mut held = Vec::with_capacity(n);
    let mut tries = 0;
    while held.len() < n {
        tries += 1;
        assert!(tries < 10_000, "no free ports below {low}");
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port =
            10_000 + (std::process::id().wrapping_mul(7_919) + k.wrapping_mul(104_729)) % span;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port as u16)) {
            held.push(l);
        }
    }
    held.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

/// Sends `sig` (for example "-TERM") to process `pid` with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig}");
}

/// Starts `cmd` with stderr piped into a channel, one message per line.
pub fn spawn_with_lines(cmd: &mut Command) -> (Proc, mpsc::Receiver<String>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Proc(child), rx)
}

/// Lines received until one contains `needle` (Ok, every line so far) or `deadline` passes
/// (Err, every line seen).
pub fn wait_for_line(
    rx: &mpsc::Receiver<String>,
    needle: &str,
    deadline: Instant,
) -> Result<String, String> {
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(needle) {
                    return Ok(seen);
                }
            }
            Err(_) => return Err(seen),
        }
    }
}

/// How `child` exited, or `None` if it still runs after `within`.
pub fn exit_within(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Connects to a server a child is starting, retrying for up to 10 s.
pub fn connect_when_up(addr: SocketAddr) -> login_node::client::Client {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match login_node::client::Client::connect(addr, Duration::from_secs(1)) {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("server at {addr} never came up: {e}"),
        }
    }
}
