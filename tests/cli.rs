//! The `login-node` binary as operators and scripts use it.

mod common;

use common::child::{connect_when_up, exit_within, free_port, signal};
use common::{cpu_seconds, expect_kick, REPLY, TOKEN};
use login_node::client::{Client, ServerMessage};
use login_node::config::DEFAULT_TOKEN;
use login_node::proto::NodeType;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_login-node");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("runs")
}

/// A child server; killed on drop if still running. It runs in a directory of its own (its
/// default `./state` lands there).
struct Proc(Child, std::path::PathBuf);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn scratch_dir() -> std::path::PathBuf {
    let dir = common::temp_dir("cli");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Writes `dir/node.toml`: listen on 127.0.0.1:`port`, state in `dir/state`, then `extra`;
/// its path.
fn write_node_toml(dir: &std::path::Path, port: u16, extra: &str) -> std::path::PathBuf {
    let file = dir.join("node.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:{port}\"\nstate_dir = \"{}\"\n{extra}",
            dir.join("state").display()
        ),
    )
    .expect("write config");
    file
}

/// Spawns with stderr piped, in a scratch directory; with any arguments, the admin API
/// takes an ephemeral port (parallel tests must not share 7701).
fn spawn(cmd: &mut Command) -> Proc {
    let dir = scratch_dir();
    if cmd.get_args().count() > 0 && !cmd.get_args().any(|a| a == "--admin-listen") {
        cmd.args(["--admin-listen", "127.0.0.1:0"]);
    }
    Proc(
        cmd.current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
        dir,
    )
}

fn sigterm(p: &Proc) {
    signal(p.0.id(), "-TERM");
}

/// The exit code, if the child exits within `within`.
fn wait_exit(p: &mut Proc, within: Duration) -> Option<i32> {
    exit_within(&mut p.0, within).and_then(|s| s.code())
}

#[test]
fn help_lists_every_flag_with_its_default() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--listen",
        "--token",
        "--heartbeat-interval",
        "--heartbeat-timeout",
        "--auth-timeout",
        "--auth-window",
        "--max-frame",
        "--max-connections",
        "--duplicate-policy",
        "--default-capacity",
        "--log-level",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
    assert!(text.contains("127.0.0.1:7700"), "defaults shown");
}

#[test]
fn bad_configuration_exits_2_naming_the_key() {
    let out = run(&["--heartbeat-timeout", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("heartbeat_timeout"));

    let dir = std::env::temp_dir().join(format!("login-node-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "max_frame = 1\n").expect("write");
    let out = run(&["--config", file.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("max_frame") && err.contains("bad.toml"),
        "{err}"
    );
    std::fs::write(&file, "duplicate_policy = \"replace\"\nmystery = 3\n").expect("write");
    let out = run(&["--config", file.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mystery"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn default_token_is_refused_off_loopback() {
    let out = run(&["--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("default token"));
}

#[test]
fn sigterm_kicks_every_node_with_reason_4_and_exits_0() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut p = spawn(Command::new(BIN).args(["--listen", &addr.to_string(), "--token", TOKEN]));
    let mut c = connect_when_up(addr);
    assert_eq!(
        c.auth(NodeType::Game, 1, "dev", TOKEN, None)
            .expect("auth")
            .code,
        0
    );
    c.send_heartbeat(1).expect("hb");
    assert_eq!(
        c.recv(REPLY).expect("ack"),
        Some(ServerMessage::HeartbeatAck(1))
    );
    sigterm(&p);
    expect_kick(&mut c, 4);
    assert_eq!(wait_exit(&mut p, Duration::from_secs(5)), Some(0));
}

#[test]
fn config_file_and_flags_combine() {
    let dir = std::env::temp_dir().join(format!("login-node-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("node.toml");
    let port = free_port();
    std::fs::write(&file, format!("listen = \"127.0.0.1:{port}\"\ntoken = \"from-file\"\nheartbeat_interval = 4\nheartbeat_timeout = 9\n"))
        .expect("write");
    // The flag after --config overrides the file's heartbeat_interval.
    let _p = spawn(Command::new(BIN).args([
        "--config",
        file.to_str().expect("utf8"),
        "--heartbeat-interval",
        "3",
    ]));
    let mut c = connect_when_up(format!("127.0.0.1:{port}").parse().expect("addr"));
    let r = c
        .auth(NodeType::Cross, 2, "dev", "from-file", None)
        .expect("auth");
    assert_eq!(
        (r.code, r.heartbeat_interval, r.heartbeat_timeout),
        (0, 3, 9)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_arguments_serves_on_7700_with_the_dev_token() {
    let mut p = spawn(&mut Command::new(BIN));
    let mut c = connect_when_up("127.0.0.1:7700".parse().expect("addr"));
    let r = c
        .auth(NodeType::Game, 1, "dev", DEFAULT_TOKEN, None)
        .expect("auth");
    assert_eq!(r.code, 0);
    let stderr = stop_cleanly(&mut p);
    assert!(
        stderr.contains("DEFAULT DEVELOPMENT TOKEN"),
        "loud warning: {stderr}"
    );
}

#[test]
fn running_out_of_file_descriptors_does_not_spin_and_recovers() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    // 40 descriptors: a handful for the process itself, the rest for nodes.
    let p = spawn(Command::new("prlimit").args([
        "--nofile=40:40",
        BIN,
        "--listen",
        &addr.to_string(),
        "--token",
        TOKEN,
        "--auth-timeout",
        "60",
    ]));
    let mut first = connect_when_up(addr);
    assert_eq!(
        first
            .auth(NodeType::Game, 1, "dev", TOKEN, None)
            .expect("auth")
            .code,
        0
    );
    // Far more connections than the server can hold: the kernel completes them in the backlog.
    let flood: Vec<Client> = (0..80)
        .map(|_| Client::connect(addr, REPLY).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300)); // let the server hit the limit
    let before = cpu_seconds(p.0.id());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_seconds(p.0.id()) - before;
    assert!(
        used < 0.2,
        "server used {used:.2} s of CPU in 1 s while out of descriptors: it spins"
    );
    // The online node is still served.
    first.send_heartbeat(9).expect("hb");
    assert_eq!(
        first.recv(REPLY).expect("ack"),
        Some(ServerMessage::HeartbeatAck(9))
    );
    // Descriptors come back when connections close, and new nodes get in again.
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = Client::connect(addr, REPLY).expect("connect");
        match c.auth(NodeType::Game, 2, "dev", TOKEN, None) {
            Ok(r) => {
                assert_eq!(r.code, 0);
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("server did not recover: {e}"),
        }
    }
}

/// The AUTH_RESULT code for game node `id` signing with `token`, on a fresh connection.
fn auth_code(addr: SocketAddr, id: u32, token: &str) -> u8 {
    let mut c = Client::connect(addr, REPLY).expect("connect");
    c.auth(NodeType::Game, id, "dev", token, None)
        .expect("auth")
        .code
}

/// SIGTERM: the child exits 0 within 5 s; its stderr.
fn stop_cleanly(p: &mut Proc) -> String {
    sigterm(p);
    assert_eq!(wait_exit(p, Duration::from_secs(5)), Some(0));
    stderr_of(p)
}

fn stderr_of(p: &mut Proc) -> String {
    let mut stderr = String::new();
    use std::io::Read;
    p.0.stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("read");
    stderr
}

#[test]
fn sighup_reloads_reloadable_keys_and_rejects_a_bad_file_whole() {
    let dir = scratch_dir();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let write = |extra: &str| write_node_toml(&dir, port, extra);
    let file = write("token = \"first-secret-A1\"\nheartbeat_interval = 4\n");
    let admin_port = free_port();
    let mut p = spawn(Command::new(BIN).args([
        "--config",
        file.to_str().expect("utf8"),
        "--admin-listen",
        &format!("127.0.0.1:{admin_port}"),
    ]));
    let mut c = connect_when_up(addr);
    assert_eq!(
        c.auth(NodeType::Game, 1, "dev", "first-secret-A1", None)
            .expect("auth")
            .code,
        0
    );
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    let reloads = |result: &str| -> bool {
        let (_, text) = common::http(admin_addr, "GET", "/metrics", None, None);
        text.contains(&format!(
            "login_node_config_reloads_total{{result=\"{result}\"}} 1"
        ))
    };
    let list_max_age = || -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(admin_addr).expect("connect");
        s.set_read_timeout(Some(REPLY)).expect("timeout");
        s.write_all(b"GET /public/servers/any HTTP/1.1\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read");
        text.lines()
            .find_map(|l| l.strip_prefix("Cache-Control: "))
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(list_max_age(), "public, max-age=5");

    // A bad file (unknown key) is rejected whole: the old token still works.
    write("token = \"second-secret-B2\"\nheartbeat_interval = 6\nlisten_typo = 1\n");
    signal(p.0.id(), "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !reloads("rejected") {
        assert!(Instant::now() < deadline, "the reload was never rejected");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(auth_code(addr, 4, "first-secret-A1"), 0);

    write("token = \"second-secret-B2\"\nheartbeat_interval = 6\npublic_max_age = 33\n");
    signal(p.0.id(), "-HUP");
    while !reloads("applied") {
        assert!(Instant::now() < deadline, "the reload was never applied");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut c2 = Client::connect(addr, REPLY).expect("connect");
    let r = c2
        .auth(NodeType::Game, 2, "dev", "second-secret-B2", None)
        .expect("auth");
    assert_eq!(
        (r.code, r.heartbeat_interval),
        (0, 6),
        "new token and interval"
    );
    assert_eq!(
        list_max_age(),
        "public, max-age=33",
        "the players' list follows"
    );
    assert_eq!(
        auth_code(addr, 3, "first-secret-A1"),
        1,
        "the old token is gone"
    );
    let stderr = stop_cleanly(&mut p);
    assert!(stderr.contains("configuration rejected"), "{stderr}");
    assert!(stderr.contains("SIGHUP: token changed"), "{stderr}");
    assert!(
        stderr.contains("SIGHUP: heartbeat_interval changed"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret-A1") && !stderr.contains("secret-B2"),
        "tokens never logged: {stderr}"
    );
}

#[test]
fn sighup_cannot_bring_a_development_token_to_a_public_listener() {
    // Bound to 0.0.0.0 (every address, loopback included) with real tokens, on ports the
    // kernel picks (no race with parallel tests); a reloaded file claims loopback addresses
    // (those need a restart) and drops a token: rejected whole.
    let dir = scratch_dir();
    let file = dir.join("node.toml");
    let write = |listen: &str, admin_listen: &str, tokens: &str| {
        std::fs::write(
            &file,
            format!(
                "listen = \"{listen}:0\"\nadmin_listen = \"{admin_listen}:0\"\nstate_dir = \"{}\"\n{tokens}",
                dir.join("state").display()
            ),
        )
        .expect("write config")
    };
    let both =
        "heartbeat_interval = 4\ntoken = \"node-secret-1\"\nadmin_token = \"admin-secret-1\"\n";
    write("0.0.0.0", "0.0.0.0", both);
    // Not `spawn`: its --admin-listen flag would override the file's on every reload too.
    let run_dir = scratch_dir();
    let mut p = Proc(
        Command::new(BIN)
            .args(["--config", file.to_str().expect("utf8")])
            .current_dir(&run_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
        run_dir,
    );
    // The node binds its port first, then the admin API: their ports in descriptor order.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (port, admin_port) = loop {
        if let [node, admin] = listening_ports(p.0.id())[..] {
            break (node, admin);
        }
        assert!(Instant::now() < deadline, "the node never listened");
        std::thread::sleep(Duration::from_millis(20));
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    let rejected = |n: u32| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, text) = common::http(admin_addr, "GET", "/metrics", None, None);
            if text.contains(&format!(
                "login_node_config_reloads_total{{result=\"rejected\"}} {n}"
            )) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "reload {n} never rejected: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    write(
        "127.0.0.1",
        "0.0.0.0",
        "heartbeat_interval = 5\nadmin_token = \"admin-secret-1\"\n",
    );
    signal(p.0.id(), "-HUP");
    rejected(1);
    assert_eq!(auth_code(addr, 1, DEFAULT_TOKEN), 1, "no development token");
    assert_eq!(auth_code(addr, 2, "node-secret-1"), 0);

    write(
        "0.0.0.0",
        "127.0.0.1",
        "heartbeat_interval = 6\ntoken = \"node-secret-1\"\n",
    );
    signal(p.0.id(), "-HUP");
    rejected(2);
    let dev = login_node::config::DEFAULT_ADMIN_TOKEN;
    let (code, _) = common::http(admin_addr, "GET", "/api/nodes", Some(dev), None);
    assert_eq!(code, 401, "no development admin token");
    let (code, _) = common::http(
        admin_addr,
        "GET",
        "/api/nodes",
        Some("admin-secret-1"),
        None,
    );
    assert_eq!(code, 200);
    let mut c = Client::connect(addr, REPLY).expect("connect");
    let r = c
        .auth(NodeType::Game, 3, "dev", "node-secret-1", None)
        .expect("auth");
    assert_eq!(
        r.heartbeat_interval, 4,
        "rejected whole: nothing else applied"
    );
    let log = stop_cleanly(&mut p);
    assert!(
        log.contains("refusing to listen on non-loopback 0.0.0.0"),
        "{log}"
    );
    assert!(
        log.contains("refusing a non-loopback admin listener 0.0.0.0"),
        "{log}"
    );
}

/// The TCP ports process `pid` listens on, in the order of its descriptors (from /proc).
fn listening_ports(pid: u32) -> Vec<u16> {
    let mut listening = std::collections::HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let (Some(local), Some(&"0A"), Some(inode)) = (f.get(1), f.get(3), f.get(9)) {
                let port = local
                    .rsplit(':')
                    .next()
                    .and_then(|h| u16::from_str_radix(h, 16).ok());
                if let Some(port) = port {
                    listening.insert(inode.to_string(), port);
                }
            }
        }
    }
    let mut fds: Vec<(u32, u16)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| {
                    let fd = e.file_name().to_str()?.parse().ok()?;
                    let target = std::fs::read_link(e.path()).ok()?;
                    let inode = target
                        .to_str()?
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .to_string();
                    Some((fd, *listening.get(&inode)?))
                })
                .collect()
        })
        .unwrap_or_default();
    fds.sort_unstable();
    fds.into_iter().map(|(_, port)| port).collect()
}

#[test]
fn systemd_is_told_ready_and_stopping() {
    let dir = scratch_dir();
    let sock_path = dir.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let port = free_port();
    let mut p = spawn(
        Command::new(BIN)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--token", TOKEN])
            .args(["--state-dir", &dir.join("state").display().to_string()])
            .env("NOTIFY_SOCKET", &sock_path),
    );
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY datagram");
    let ready = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(ready.starts_with("READY=1"), "{ready}");
    // Ready means both listeners are up: the node port answers at once.
    let node_addr = format!("127.0.0.1:{port}").parse().expect("addr");
    assert_eq!(
        auth_code(node_addr, 1, TOKEN),
        0,
        "node port is up when READY is sent"
    );
    sigterm(&p);
    let n = sock.recv(&mut buf).expect("STOPPING datagram");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert_eq!(wait_exit(&mut p, Duration::from_secs(5)), Some(0));
}

#[test]
fn a_corrupt_legacy_journal_or_a_locked_state_dir_refuses_to_start() {
    use login_node::state::{Db, Record};
    let dir = scratch_dir();
    let state = dir.join("state");
    let mut bytes = Vec::new();
    for serv in 1..=3 {
        Record::Assign {
            serv,
            cross: 90,
            pos: serv as u16,
        }
        .encode(&mut bytes);
    }
    {
        let (mut db, _) = Db::open(&state).expect("open");
        db.commit(&bytes).expect("commit");
    }
    // A second process on the same directory is refused while the first holds it.
    let port = free_port();
    let state_arg = state.display().to_string();
    let p = spawn(Command::new(BIN).args([
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--token",
        TOKEN,
        "--state-dir",
        &state_arg,
    ]));
    connect_when_up(format!("127.0.0.1:{port}").parse().expect("addr"));
    let start_on = |state_arg: &str| {
        run(&[
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            state_arg,
            "--admin-listen",
            "off",
        ])
    };
    let out = start_on(&state_arg);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("locked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(p);

    // A journal of the earlier format with one byte of its second record flipped: corruption
    // in the middle, named with its offset, and nothing migrated.
    let legacy = dir.join("legacy");
    std::fs::create_dir_all(&legacy).expect("dir");
    let mut journal = b"LNJRNL01".to_vec();
    journal.extend_from_slice(&bytes);
    let second = 8 + 8 + 11; // magic, then the first record (8-byte header + 11-byte body)
    journal[second + 9] ^= 0x40;
    std::fs::write(legacy.join("journal"), &journal).expect("write");
    let out = start_on(&legacy.display().to_string());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("journal") && stderr.contains(&format!("offset {second}")),
        "{stderr}"
    );
    assert!(!legacy.join("state.db").exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_busy_default_admin_port_does_not_stop_the_node_but_a_busy_chosen_one_does() {
    // 7701 is taken (by us, or by another test's node: either way it is busy).
    let _hold = TcpListener::bind("127.0.0.1:7701");
    let port = free_port();
    let dir = scratch_dir();
    let state = dir.join("state").display().to_string();
    let mut p = spawn(Command::new(BIN).args([
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--token",
        TOKEN,
        "--state-dir",
        &state,
        "--admin-listen",
        "127.0.0.1:7701",
    ]));
    let node_addr = format!("127.0.0.1:{port}").parse().expect("addr");
    connect_when_up(node_addr);
    assert_eq!(auth_code(node_addr, 1, TOKEN), 0);
    let stderr = stop_cleanly(&mut p);
    assert!(stderr.contains("admin API disabled"), "{stderr}");

    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_addr = busy.local_addr().expect("addr").to_string();
    let out = run(&[
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        &dir.join("state2").display().to_string(),
        "--admin-listen",
        &busy_addr,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("admin_listen"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sighup_replaces_the_viewer_token() {
    let dir = scratch_dir();
    let (port, admin_port) = (free_port(), free_port());
    let write =
        |viewer: &str| write_node_toml(&dir, port, &format!("viewer_token = \"{viewer}\"\n"));
    let file = write("viewer-one-C3");
    let mut p = spawn(Command::new(BIN).args([
        "--config",
        file.to_str().expect("utf8"),
        "--admin-listen",
        &format!("127.0.0.1:{admin_port}"),
    ]));
    drop(connect_when_up(
        format!("127.0.0.1:{port}").parse().expect("addr"),
    ));
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(admin).is_err() {
        assert!(Instant::now() < deadline, "the admin API never came up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let whoami = |token: &str| common::http(admin, "GET", "/api/whoami", Some(token), None).0;
    assert_eq!(whoami("viewer-one-C3"), 200);

    write("viewer-two-D4");
    signal(p.0.id(), "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while whoami("viewer-two-D4") != 200 {
        assert!(Instant::now() < deadline, "the reload was never applied");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(whoami("viewer-one-C3"), 401, "the old viewer token is gone");
    let stderr = stop_cleanly(&mut p);
    assert!(stderr.contains("SIGHUP: viewer_token changed"), "{stderr}");
    assert!(
        !stderr.contains("one-C3") && !stderr.contains("two-D4"),
        "tokens never logged: {stderr}"
    );
}

/// A deadline that passed while the process was stopped fires as soon as it runs again: the
/// poll after SIGCONT (which returns EINTR) waits from the clock, not from the turn before
/// the stop (a regression the refactor of issue 14 had: the KICK came 2.7 s late).
#[test]
fn a_deadline_passed_while_the_process_was_stopped_fires_at_once_after_sigcont() {
    let server =
        common::process::Server::start(&["--heartbeat-interval", "1", "--heartbeat-timeout", "3"]);
    let mut node = common::send_game(server.addr, 5, "dev").expect("game node");
    loop {
        match node.recv(REPLY).expect("welcome") {
            Some(ServerMessage::WhitelistSnapshot { last: true, .. }) => break,
            Some(_) => continue,
            None => panic!("closed before its welcome"),
        }
    }
    // Silent from here on; the server stops while its loop waits for that deadline.
    signal(server.pid(), "-STOP");
    std::thread::sleep(Duration::from_secs(4)); // the stop itself, past the 3 s deadline
    signal(server.pid(), "-CONT");
    let resumed = Instant::now();
    let heard = loop {
        match node.recv(Duration::from_secs(5)) {
            Ok(Some(ServerMessage::Kick(reason))) => break reason,
            Ok(Some(_)) => continue,
            other => panic!("no KICK after SIGCONT: {other:?}"),
        }
    };
    assert_eq!(heard, 2, "heartbeat timeout");
    assert!(
        resumed.elapsed() < Duration::from_millis(1500),
        "KICK {:?} after SIGCONT",
        resumed.elapsed()
    );
}
