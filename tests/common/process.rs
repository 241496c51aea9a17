//! The `login-node` binary as a child process on free loopback ports, for tests that measure
//! it from outside (RSS, descriptors, log lines): hostile clients and memory growth.
#![allow(dead_code)]

use super::child::free_addr;
use super::{auth_frame, http, ADMIN_TOKEN, TOKEN};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_login-node");
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A server process; its stderr goes to a file (a pipe nobody reads could block it).
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: PathBuf,
}

impl Server {
    /// Starts the binary on two free ports; if it exits during start-up (a port was taken
    /// between choosing and binding it), tries again with new ports.
    pub fn start(extra: &[&str]) -> Server {
        for _ in 0..5 {
            let dir = super::temp_dir("process");
            std::fs::create_dir_all(&dir).expect("dir");
            let addr = free_addr();
            let admin = free_addr();
            let log = std::fs::File::create(dir.join("stderr.log")).expect("log file");
            let child = Command::new(BIN)
                .args(["--listen", &addr.to_string(), "--token", TOKEN])
                .args(["--admin-listen", &admin.to_string()])
                .args(["--admin-token", ADMIN_TOKEN])
                .args(["--state-dir", &dir.join("state").display().to_string()])
                .args(extra)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn");
            let mut server = Server {
                child,
                addr,
                admin,
                dir,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                // The child first: this also rules out a TCP self-connect to a dead port.
                if server.child.try_wait().expect("wait").is_some() {
                    break;
                }
                if TcpStream::connect(admin).is_ok() && TcpStream::connect(addr).is_ok() {
                    return server;
                }
                assert!(Instant::now() < deadline, "server never came up");
                std::thread::sleep(Duration::from_millis(10));
            }
            eprintln!("server exited at start ({}); retrying", server.log().trim());
        }
        panic!("the server would not start");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    pub fn metric(&self, name: &str) -> u64 {
        let (_, text) = http(self.admin, "GET", "/metrics", None, None);
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name}"))
    }

    /// A game node that sends AUTH and GAME_INFO and then never reads (a 4 KiB receive
    /// buffer), so what the server sends it piles up in the server's write queue.
    pub fn lazy_game_node(&self, id: u32) -> TcpStream {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        s.set_recv_buffer_size(4096).expect("rcvbuf");
        s.connect(&self.addr.into()).expect("connect");
        let mut s: TcpStream = s.into();
        s.write_all(&auth_frame(id, "dev", TOKEN)).expect("auth");
        let mut info = Vec::new();
        super::game_info(id, "p").encode(&mut info).expect("info");
        s.write_all(&info).expect("info");
        s
    }

    /// Adds `count` whitelist entries of 6 digits and `pad` x's in one admin request (200);
    /// returns them in order.
    pub fn add_whitelist_entries(&self, count: usize, pad: usize) -> Vec<String> {
        let entries: Vec<String> = (0..count)
            .map(|i| format!("{i:06}{}", "x".repeat(pad)))
            .collect();
        let body = serde_json::json!({ "entries": entries }).to_string();
        let (status, text) = http(
            self.admin,
            "POST",
            "/api/whitelist",
            Some(ADMIN_TOKEN),
            Some(&body),
        );
        assert_eq!(status, 200, "{text}");
        entries
    }

    /// Waits (bounded) until `f` holds.
    pub fn wait_for(&self, what: &str, within: Duration, mut f: impl FnMut(&Server) -> bool) {
        let deadline = Instant::now() + within;
        while !f(self) {
            assert!(Instant::now() < deadline, "{what}: not within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
