//! Failover groups over real processes (contract §6): a 3-member etcd cluster (Debian's
//! `etcd-server`, on free loopback ports, never 2379/2380) and login-node binaries that form
//! one group. Every scenario ends by checking that no slot is held twice and that every
//! CROSS_ASSIGN a game node was told is what the group's state says now.
//!
//! Needs `etcd` on PATH (`.ci/run` installs `etcd-server`); bounded in time, loopback only.

mod common;

use common::child::{free_port, free_ports_outside_ephemeral, Proc};
use common::{cross_node, cross_slots, parse_response, REPLY, TOKEN};
use login_node::client::machine::NodeSpec;
use login_node::client::node::{ClientEvent, NodeClient, Options};
use login_node::client::{Client, ServerMessage};
use login_node::proto::NodeType;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_login-node");
const ADMIN_TOKEN: &str = "failover-admin-token";
const TTL: u64 = 4;

fn signal(p: &Proc, sig: &str) {
    common::child::signal(p.0.id(), sig);
}

/// One plain HTTP/1.1 request; (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    // The admin token only for the admin API (etcd's gateway reads the header as its own).
    let auth = if path.starts_with("/api/") {
        format!("Authorization: Bearer {ADMIN_TOKEN}\r\n")
    } else {
        String::new()
    };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).ok()?;
    (!bytes.is_empty()).then(|| parse_response(&bytes))
}

/// A 3-member etcd cluster on free loopback ports.
struct Etcd {
    members: Vec<Option<Proc>>,
    args: Vec<Vec<String>>,
    clients: Vec<String>,
}

impl Etcd {
    fn start(dir: &std::path::Path) -> Etcd {
        Etcd::start_with(dir, &[])
    }

    /// A cluster whose members also get `extra` flags.
    fn start_with(dir: &std::path::Path, extra: &[&str]) -> Etcd {
        assert!(
            Command::new("etcd").arg("--version").output().is_ok(),
            "etcd is not installed: `apt-get install etcd-server` (.ci/run does)"
        );
        let free = free_ports_outside_ephemeral(6);
        let ports: Vec<(u16, u16)> = free.chunks(2).map(|p| (p[0], p[1])).collect();
        let cluster: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
            .collect();
        let mut etcd = Etcd {
            members: Vec::new(),
            args: Vec::new(),
            clients: ports
                .iter()
                .map(|(c, _)| format!("http://127.0.0.1:{c}"))
                .collect(),
        };
        for (i, (client, peer)) in ports.iter().enumerate() {
            let args: Vec<String> = [
                "--name".to_string(),
                format!("e{i}"),
                "--data-dir".into(),
                dir.join(format!("etcd{i}")).display().to_string(),
                "--listen-client-urls".into(),
                format!("http://127.0.0.1:{client}"),
                "--advertise-client-urls".into(),
                format!("http://127.0.0.1:{client}"),
                "--listen-peer-urls".into(),
                format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls".into(),
                format!("http://127.0.0.1:{peer}"),
                "--initial-cluster".into(),
                cluster.join(","),
                "--initial-cluster-token".into(),
                format!("t{}", std::process::id()),
                "--heartbeat-interval".into(),
                "50".into(),
                "--election-timeout".into(),
                "500".into(),
            ]
            .into_iter()
            .chain(extra.iter().map(|a| a.to_string()))
            .collect();
            etcd.args.push(args);
            etcd.members.push(None);
            etcd.restart(i);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for c in etcd.clients.clone() {
            let addr: SocketAddr = c.trim_start_matches("http://").parse().expect("addr");
            loop {
                let up = http(addr, "GET", "/health", "")
                    .is_some_and(|(s, b)| s == 200 && b.contains("true"));
                if up {
                    break;
                }
                assert!(Instant::now() < deadline, "etcd {c} never became healthy");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        etcd
    }

    fn restart(&mut self, i: usize) {
        let child = Command::new("etcd")
            .args(&self.args[i])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcd");
        self.members[i] = Some(Proc(child));
    }

    fn stop(&mut self, i: usize) {
        self.members[i] = None;
    }
}

/// A login-node member of the group.
struct Member {
    proc: Proc,
    addr: SocketAddr,
    admin: SocketAddr,
    name: String,
}

fn member(etcd: &Etcd, name: &str, prefix: &str, dir: &std::path::Path) -> Member {
    member_with(etcd, name, prefix, dir, &[])
}

/// A member started with `extra` flags as well.
fn member_with(
    etcd: &Etcd,
    name: &str,
    prefix: &str,
    dir: &std::path::Path,
    extra: &[&str],
) -> Member {
    member_with_env(etcd, name, prefix, dir, extra, &[])
}

/// A member started with `extra` flags and `env` variables.
fn member_with_env(
    etcd: &Etcd,
    name: &str,
    prefix: &str,
    dir: &std::path::Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Member {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log");
    let child = Command::new(BIN)
        .args([
            "--listen",
            &addr.to_string(),
            "--admin-listen",
            &admin.to_string(),
            "--token",
            TOKEN,
            "--admin-token",
            ADMIN_TOKEN,
            "--etcd",
            &etcd.clients.join(","),
            "--etcd-prefix",
            prefix,
            "--member-name",
            name,
            "--lease-ttl",
            &TTL.to_string(),
            "--state-dir",
            &dir.join(name).display().to_string(),
            "--default-capacity",
            "1000",
        ])
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn login-node");
    Member {
        proc: Proc(child),
        addr,
        admin,
        name: name.into(),
    }
}

/// One scenario's group: a fresh 3-member etcd and login-node members "a", "b", ... on it,
/// named after the test so parallel tests share nothing. Dropping it stops etcd and removes
/// the scratch dir (kept with `KEEP_FAILOVER_LOGS` set, for the members' logs).
struct Group {
    etcd: Etcd,
    prefix: String,
    dir: PathBuf,
    members: Vec<Member>,
}

impl Group {
    fn start(name: &str, members: usize) -> Group {
        let dir = common::temp_dir(&format!("failover-{name}"));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let etcd = Etcd::start(&dir);
        let prefix = format!("/test/{name}-{}", std::process::id());
        let members = ["a", "b"][..members]
            .iter()
            .map(|m| member(&etcd, m, &prefix, &dir))
            .collect();
        Group {
            etcd,
            prefix,
            dir,
            members,
        }
    }

    fn members(&self) -> Vec<&Member> {
        self.members.iter().collect()
    }

    /// Waits (15 s) until a member is active: (the active member, the other one).
    fn active_and_other(&self) -> (&Member, &Member) {
        let (i, _) = wait_active(&self.members(), Duration::from_secs(15));
        (&self.members[i], &self.members[1 - i])
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.etcd.members.clear();
        if std::env::var_os("KEEP_FAILOVER_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn role(m: &Member) -> Option<(u16, Value)> {
    let (status, body) = http(m.admin, "GET", "/healthz", "")?;
    Some((status, serde_json::from_str(&body).ok()?))
}

/// Waits until one of `members` answers /healthz 200 "active"; its index and how long it took.
fn wait_active(members: &[&Member], within: Duration) -> (usize, Duration) {
    let start = Instant::now();
    loop {
        for (i, m) in members.iter().enumerate() {
            if let Some((200, v)) = role(m) {
                if v["role"] == "active" {
                    return (i, start.elapsed());
                }
            }
        }
        assert!(
            start.elapsed() < within,
            "no member became active within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send_game(addr: SocketAddr, id: u32) -> Option<Client> {
    common::send_game(addr, id, "p")
}

/// What a game node's connection said: its CROSS_ASSIGN, KICK, or nothing before it closed.
#[derive(Debug, PartialEq)]
enum Heard {
    Assign(u32, u16),
    Kick(u8),
    AuthCode(u8),
    Nothing,
}

fn hear(c: &mut Client, wait: Duration) -> Heard {
    loop {
        match c.recv(wait) {
            Ok(Some(ServerMessage::CrossAssign {
                cross_server_id,
                cross_pos,
                ..
            })) => return Heard::Assign(cross_server_id, cross_pos),
            Ok(Some(ServerMessage::Kick(r))) => return Heard::Kick(r),
            Ok(Some(ServerMessage::AuthResult(r))) if r.code != 0 => {
                return Heard::AuthCode(r.code)
            }
            Ok(Some(_)) => continue,
            _ => return Heard::Nothing,
        }
    }
}

/// Every game node's slot in the group's state, from the active member's admin API.
fn recorded(m: &Member) -> HashMap<u32, (u32, u16)> {
    let (status, body) = http(m.admin, "GET", "/api/cross", "").expect("answer");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    let mut slots = HashMap::new();
    for (serv, slot) in cross_slots(&v) {
        assert!(slots.insert(serv, slot).is_none(), "game {serv} twice");
    }
    let mut held: HashMap<(u32, u16), u32> = HashMap::new();
    for (&serv, &slot) in &slots {
        if let Some(other) = held.insert(slot, serv) {
            panic!("slot {slot:?} held by both {other} and {serv}");
        }
    }
    slots
}

/// Game nodes `ids` come back to `m`: each gets the assignment it was told before, if any
/// (recorded in `told` otherwise); then `m`'s state holds what every node was told.
fn rejoin(m: &Member, ids: std::ops::RangeInclusive<u32>, told: &mut HashMap<u32, (u32, u16)>) {
    for id in ids {
        let mut c = send_game(m.addr, id).expect("connect");
        match hear(&mut c, REPLY) {
            Heard::Assign(x, p) => {
                if let Some(before) = told.get(&id) {
                    assert_eq!((x, p), *before, "game {id}");
                }
                told.insert(id, (x, p));
            }
            other => panic!("game {id} on {}: {other:?}", m.name),
        }
    }
    assert_told_matches(told, m);
}

fn assert_told_matches(told: &HashMap<u32, (u32, u16)>, active: &Member) {
    let now = recorded(active);
    for (serv, slot) in told {
        assert_eq!(now.get(serv), Some(slot), "game {serv} was told {slot:?}");
    }
}

#[test]
fn one_member_is_active_standbys_answer_code_7_and_a_step_down_hands_over_at_once() {
    let group = Group::start("stepdown", 2);
    let (active, standby) = group.active_and_other();
    // The standby: 503 naming the active member, AUTH code 7 then closed, writes refused.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, v) = role(standby).expect("healthz");
        assert_eq!(status, 503);
        if v["active"] == active.name.as_str() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "standby never named the active: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut c = Client::connect(standby.addr, REPLY).expect("connect");
    assert_eq!(
        c.auth(NodeType::Game, 9, "p", TOKEN, None)
            .expect("auth")
            .code,
        7
    );
    assert!(c.closed_within(REPLY));
    let (status, body) =
        http(standby.admin, "POST", "/api/whitelist", r#"{"entry": "x"}"#).expect("answer");
    assert_eq!(status, 503);
    assert!(body.contains(&active.name), "{body}");

    // The active serves; a whitelist change and an assignment land in the group's state.
    let _x = cross_node(active.addr, 90);
    let mut g = send_game(active.addr, 101).expect("connect");
    let mut told = HashMap::new();
    assert_eq!(hear(&mut g, REPLY), Heard::Assign(90, 1));
    told.insert(101, (90, 1));
    let (status, _) = http(
        active.admin,
        "POST",
        "/api/whitelist",
        r#"{"entry": "alice"}"#,
    )
    .expect("answer");
    assert_eq!(status, 200);

    // Step down: KICK 6 to its nodes, and the standby is active within 1.5 s.
    let (status, _) = http(active.admin, "POST", "/api/step-down", "").expect("answer");
    assert_eq!(status, 200);
    let start = Instant::now();
    assert_eq!(hear(&mut g, REPLY), Heard::Kick(6));
    let (j, _) = wait_active(&[standby], Duration::from_millis(1500));
    assert_eq!(j, 0);
    let took = start.elapsed();
    eprintln!("step-down: {} took over in {took:?}", standby.name);
    assert!(took <= Duration::from_millis(1500), "{took:?}");
    // The node returns to the new active member with its assignment; the whitelist is there.
    let _x = cross_node(standby.addr, 90);
    let mut g = send_game(standby.addr, 101).expect("connect");
    assert_eq!(hear(&mut g, REPLY), Heard::Assign(90, 1));
    let (_, wl) = http(standby.admin, "GET", "/api/whitelist", "").expect("answer");
    assert!(wl.contains("alice"), "{wl}");
    assert_told_matches(&told, standby);

    // SIGTERM hands over too: the lease is revoked on the way out.
    let (status, _) = http(standby.admin, "GET", "/healthz", "").expect("answer");
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_secs(3)); // the stepped-down member campaigns again
    signal(&standby.proc, "-TERM");
    let start = Instant::now();
    assert_eq!(hear(&mut g, REPLY), Heard::Kick(6));
    wait_active(&[active], Duration::from_millis(1500));
    eprintln!(
        "SIGTERM: {} took over in {:?}",
        active.name,
        start.elapsed()
    );
    assert_told_matches(&told, active);
}

#[test]
fn sigkill_of_the_active_during_arrivals_loses_nothing_and_a_standby_takes_over() {
    let group = Group::start("sigkill", 2);
    let (active, standby) = group.active_and_other();
    let crosses: Vec<Client> = [90, 91]
        .iter()
        .map(|&id| cross_node(active.addr, id))
        .collect();
    let mut told: HashMap<u32, (u32, u16)> = HashMap::new();
    let mut burst: Vec<(u32, Client)> = (1..=40)
        .filter_map(|id| send_game(active.addr, id).map(|c| (id, c)))
        .collect();
    for (id, c) in burst.iter_mut().take(20) {
        if let Heard::Assign(x, p) = hear(c, REPLY) {
            told.insert(*id, (x, p));
        }
    }
    // More arrive; the kill lands while they are handled.
    let late: Vec<(u32, Client)> = (41..=80)
        .filter_map(|id| send_game(active.addr, id).map(|c| (id, c)))
        .collect();
    burst.extend(late);
    std::thread::sleep(Duration::from_millis(5));
    signal(&active.proc, "-KILL");
    let killed = Instant::now();
    for (id, c) in burst.iter_mut() {
        if let Heard::Assign(x, p) = hear(c, Duration::from_millis(100)) {
            told.insert(*id, (x, p));
        }
    }
    let (_, _) = wait_active(&[standby], Duration::from_secs(TTL + 2));
    let took = killed.elapsed();
    eprintln!(
        "SIGKILL: {} active {took:?} after the kill; {} game nodes had been told",
        standby.name,
        told.len()
    );
    assert!(took <= Duration::from_secs(TTL + 2), "{took:?}");
    drop(crosses);
    // Everyone comes back to the new active member: the same assignment for every node told.
    let _crosses: Vec<Client> = [90, 91]
        .iter()
        .map(|&id| cross_node(standby.addr, id))
        .collect();
    rejoin(standby, 1..=80, &mut told);
}

#[test]
fn a_paused_active_member_stops_on_its_own_and_announces_nothing_after_losing_the_role() {
    let group = Group::start("sigstop", 2);
    let (old, new) = group.active_and_other();
    let _x = cross_node(old.addr, 90);
    let mut g1 = send_game(old.addr, 1).expect("connect");
    assert_eq!(hear(&mut g1, REPLY), Heard::Assign(90, 1));
    let mut told = HashMap::from([(1u32, (90u32, 1u16))]);

    signal(&old.proc, "-STOP");
    // While it is paused: a game node sends it its INFO (it must never be answered with an
    // assignment), and the other member takes over and assigns new nodes.
    let mut g2 = send_game(old.addr, 2).expect("connect (the kernel accepts)");
    wait_active(&[new], Duration::from_secs(TTL + 3));
    let _x_new = cross_node(new.addr, 90);
    let mut g3 = send_game(new.addr, 3).expect("connect");
    let Heard::Assign(x, p) = hear(&mut g3, REPLY) else {
        panic!("the new active member assigns");
    };
    told.insert(3, (x, p));

    signal(&old.proc, "-CONT");
    // The old member notices on its own: KICK 6 to the node it had, and nothing but code 7
    // or a close to the one that arrived meanwhile.
    assert_eq!(hear(&mut g1, REPLY), Heard::Kick(6));
    match hear(&mut g2, REPLY) {
        Heard::Assign(..) => panic!("a member that lost its role announced an assignment"),
        other => eprintln!("the node that arrived during the pause heard {other:?}"),
    }
    let (status, v) = role(old).expect("healthz");
    assert_eq!((status, v["role"].as_str()), (503, Some("standby")), "{v}");
    // Game 2 was never durably assigned by the old member: it is assigned once, by the new one.
    let mut g2 = send_game(new.addr, 2).expect("connect");
    let Heard::Assign(x, p) = hear(&mut g2, REPLY) else {
        panic!("game 2 on the new active member");
    };
    told.insert(2, (x, p));
    assert_told_matches(&told, new);
}

#[test]
fn without_an_etcd_quorum_nobody_is_active_and_with_it_back_a_member_is() {
    let mut group = Group::start("quorum", 2);
    let (active, _) = group.active_and_other();
    let mut g = send_game(active.addr, 1).expect("connect");
    hear(&mut g, Duration::from_millis(300));
    group.etcd.stop(1);
    group.etcd.stop(2);
    let stopped = Instant::now();
    // The active member cannot renew: it steps down within its local deadline.
    assert_eq!(hear(&mut g, Duration::from_secs(TTL + 2)), Heard::Kick(6));
    let took = stopped.elapsed();
    eprintln!("quorum lost: the active member stood down after {took:?}");
    assert!(took <= Duration::from_secs(TTL + 1), "{took:?}");
    for m in &group.members {
        let (status, _) = role(m).expect("healthz");
        assert_eq!(status, 503, "{} without a quorum", m.name);
    }
    group.etcd.restart(1);
    group.etcd.restart(2);
    let (_, took) = wait_active(&group.members(), Duration::from_secs(30));
    eprintln!("quorum back: a member active after {took:?}");
}

/// The etcd member that leads its cluster now.
fn etcd_leader(etcd: &Etcd) -> Option<usize> {
    let mut ids = Vec::new();
    let mut leader = None;
    for c in &etcd.clients {
        let addr: SocketAddr = c.trim_start_matches("http://").parse().ok()?;
        let Some((200, body)) = http(addr, "POST", "/v3/maintenance/status", "{}") else {
            ids.push(String::new());
            continue;
        };
        let v: Value = serde_json::from_str(&body).ok()?;
        ids.push(v["header"]["member_id"].as_str().unwrap_or("").to_string());
        leader = v["leader"].as_str().map(str::to_string).or(leader);
    }
    let leader = leader?;
    ids.iter().position(|id| *id == leader)
}

#[test]
fn sigkill_of_the_etcd_leader_during_arrivals_holds_frames_and_loses_nothing() {
    let mut group = Group::start("etcdleader", 2);
    let (i, _) = wait_active(&group.members(), Duration::from_secs(15));
    let active = &group.members[i];
    let _x = cross_node(active.addr, 90);
    let mut clients: Vec<(u32, Client)> = (1..=30)
        .filter_map(|id| send_game(active.addr, id).map(|c| (id, c)))
        .collect();
    let leader = etcd_leader(&group.etcd).expect("an etcd leader");
    group.etcd.stop(leader); // SIGKILL (Drop kills)
    let stopped = Instant::now();
    clients.extend((31..=60).filter_map(|id| send_game(active.addr, id).map(|c| (id, c))));
    // Every node is answered once etcd has elected a new leader (or, if the login node's
    // lease lapsed meanwhile, the group's new active member answers them below).
    let mut told: HashMap<u32, (u32, u16)> = HashMap::new();
    let mut kicked = 0;
    for (id, c) in clients.iter_mut() {
        match hear(c, Duration::from_secs(TTL + 3)) {
            Heard::Assign(x, p) => {
                told.insert(*id, (x, p));
            }
            Heard::Kick(6) => kicked += 1,
            other => panic!("game {id}: {other:?}"),
        }
    }
    eprintln!(
        "etcd leader killed: {} of 60 assigned within {:?}, {kicked} told to go elsewhere (KICK 6)",
        told.len(),
        stopped.elapsed()
    );
    let (active, _) = group.active_and_other();
    let _x = cross_node(active.addr, 90);
    rejoin(active, 1..=60, &mut told);
}

#[test]
fn the_rust_node_client_goes_to_the_active_member_and_follows_a_hand_over() {
    let group = Group::start("client", 2);
    let (active, standby) = group.active_and_other();
    let _x = cross_node(active.addr, 90);
    let spec = NodeSpec {
        plat: "p".into(),
        ..common::node_client::game_spec(101)
    };
    // The standby first: it answers code 7, and the client moves on at once.
    let (client, events) =
        NodeClient::start_group(vec![standby.addr, active.addr], spec, Options::default())
            .expect("start");
    // The events up to the next CROSS_ASSIGN (10 s at most): `before` is among them, and the
    // assignment is 90/1.
    let assigned_after = |what: &str, before: &dyn Fn(&ClientEvent) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let e = events
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {what}; saw {seen:?}"));
            let done = matches!(e, ClientEvent::CrossAssign { .. });
            seen.push(e);
            if done {
                break;
            }
        }
        assert!(seen.iter().any(before), "{seen:?}");
        assert!(matches!(
            seen.last(),
            Some(ClientEvent::CrossAssign {
                cross_server_id: 90,
                cross_pos: 1,
                ..
            })
        ));
    };
    assigned_after("assignment", &|e| matches!(e, ClientEvent::AuthRejected(7)));
    // A hand-over: KICK 6, then the other member, where the assignment is the same.
    let (status, _) = http(active.admin, "POST", "/api/step-down", "").expect("answer");
    assert_eq!(status, 200);
    let _x2 = {
        wait_active(&[standby], Duration::from_secs(5));
        cross_node(standby.addr, 90)
    };
    assigned_after("assignment after the hand-over", &|e| {
        matches!(e, ClientEvent::Kicked(6))
    });
    client.stop();
}

/// Every key of the group's state under `kind/` (say `server/`), read from etcd itself:
/// (key, value).
fn etcd_keys(etcd: &Etcd, prefix: &str, kind: &str) -> Vec<(String, Vec<u8>)> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let from = format!("{prefix}/state/{kind}");
    let mut end = from.clone().into_bytes();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let body = serde_json::json!({"key": b64.encode(&from), "range_end": b64.encode(&end)});
    let addr: SocketAddr = etcd.clients[0]
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let (status, text) =
        http(addr, "POST", "/v3/kv/range", &body.to_string()).expect("etcd answers");
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    v["kvs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|kv| {
            let k = b64.decode(kv["key"].as_str().unwrap_or("")).expect("key");
            let val = b64
                .decode(kv["value"].as_str().unwrap_or(""))
                .expect("value");
            (String::from_utf8_lossy(&k).into_owned(), val)
        })
        .collect()
}

/// Every game node's slot in the group's state, read from etcd itself: (key, slot).
fn etcd_assignments(etcd: &Etcd, prefix: &str) -> Vec<(String, (u32, u16))> {
    use login_node::proto::wire::Reader;
    use login_node::state::record::ServerRecord;
    etcd_keys(etcd, prefix, "server/")
        .into_iter()
        .filter_map(|(k, v)| {
            let entry = ServerRecord::decode_parts(0, &mut Reader::new(&v)).expect("value");
            Some((k, entry.slot?))
        })
        .collect()
}

/// Found by review: a connection the active member accepted before a pause got its frames
/// answered in the first turn after SIGCONT, before the lease was checked.
#[test]
fn a_connection_accepted_before_a_pause_hears_no_stale_assignment_after_it() {
    let group = Group::start("sigcont", 2);
    let (old, new) = group.active_and_other();
    let _x = cross_node(old.addr, 90);
    {
        let mut g1 = send_game(old.addr, 1).expect("connect");
        assert_eq!(hear(&mut g1, REPLY), Heard::Assign(90, 1));
    }
    let mut late = Client::connect(old.addr, REPLY).expect("connect");
    std::thread::sleep(Duration::from_millis(300)); // accepted by the old member
    signal(&old.proc, "-STOP");
    late.send_auth(NodeType::Game as u8, 1, "p", TOKEN, None)
        .expect("auth");
    late.send_game_info(&common::game_info(1, "p"))
        .expect("info");
    wait_active(&[new], Duration::from_secs(TTL + 3));
    let _x90 = cross_node(new.addr, 90);
    let _x91 = cross_node(new.addr, 91);
    let (status, body) = http(
        new.admin,
        "POST",
        "/api/assign",
        r#"{"serv_id": 1, "cross_server_id": 91}"#,
    )
    .expect("answer");
    assert_eq!(status, 200, "{body}");
    signal(&old.proc, "-CONT");
    let mut heard = Vec::new();
    while let Ok(Some(m)) = late.recv(Duration::from_secs(3)) {
        heard.push(m);
    }
    assert!(
        !heard.iter().any(|m| matches!(
            m,
            ServerMessage::CrossAssign { .. } | ServerMessage::StatusPush(_)
        )),
        "a member past its lease answered as if active: {heard:?}"
    );
}

/// Found by review: a batch whose commit failed after the role was lost was retried once the
/// member was active again, writing a slot a newer batch had handed to another node.
#[test]
fn a_batch_cut_off_by_the_loss_of_the_role_is_never_written_in_a_later_term() {
    let group = Group::start("term", 1);
    let a = &group.members[0];
    wait_active(&[a], Duration::from_secs(15));
    let _x = cross_node(a.addr, 90);
    std::thread::sleep(Duration::from_millis(500));
    for m in group.etcd.members.iter().flatten() {
        signal(m, "-STOP");
    }
    let mut g1 = send_game(a.addr, 1).expect("connect");
    assert_eq!(hear(&mut g1, Duration::from_secs(TTL + 2)), Heard::Kick(6));
    std::thread::sleep(Duration::from_secs(2));
    for m in group.etcd.members.iter().flatten() {
        signal(m, "-CONT");
    }
    wait_active(&[a], Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2)); // a stale retry would land by now
    let _x = cross_node(a.addr, 90);
    // Game 1's batch may have landed when etcd resumed (a write cut off by a timeout may or
    // may not have been applied), so game 2 gets 90/1 or 90/2; never a slot held twice.
    let mut g2 = send_game(a.addr, 2).expect("connect");
    assert!(matches!(hear(&mut g2, REPLY), Heard::Assign(90, 1 | 2)));
    std::thread::sleep(Duration::from_secs(2));
    let slots = etcd_assignments(&group.etcd, &group.prefix);
    let mut held: HashMap<(u32, u16), String> = HashMap::new();
    for (k, v) in &slots {
        if let Some(other) = held.insert(*v, k.clone()) {
            panic!("etcd holds one slot for {other} and {k}: {slots:?}");
        }
    }
}

/// Found by review: 40 game nodes with 60 KB names made one transaction etcd refused as too
/// large, retried forever.
#[test]
fn a_burst_of_long_names_is_written_in_transactions_etcd_accepts() {
    let group = Group::start("bignames", 1);
    let a = &group.members[0];
    wait_active(&[a], Duration::from_secs(15));
    let _x = cross_node(a.addr, 90);
    let name = "n".repeat(60_000);
    let mut clients = Vec::new();
    for id in 1..=40u32 {
        let mut c = Client::connect(a.addr, REPLY).expect("connect");
        c.send_auth(NodeType::Game as u8, id, "p", TOKEN, None)
            .expect("auth");
        let mut info = common::game_info(id, "p");
        info.serv_name = &name;
        c.send_game_info(&info).expect("info");
        clients.push(c);
    }
    let mut assigned = 0;
    for c in clients.iter_mut() {
        if let Heard::Assign(..) = hear(c, Duration::from_secs(8)) {
            assigned += 1;
        }
    }
    assert_eq!(assigned, 40);
}

/// Arrivals of `count` game nodes (ids from `first`) at once on `m`, each over its own
/// connection: the CROSS_ASSIGN each heard within `wait`, by id.
fn burst_told(m: &Member, first: u32, count: u32, wait: Duration) -> HashMap<u32, (u32, u16)> {
    let clients: Vec<(u32, Client)> = (first..first + count)
        .filter_map(|id| Some((id, send_game(m.addr, id)?)))
        .collect();
    clients
        .into_iter()
        .filter_map(|(id, mut c)| match hear(&mut c, wait) {
            Heard::Assign(cross, pos) => Some((id, (cross, pos))),
            _ => None,
        })
        .collect()
}

/// A sample's value in a `/metrics` text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn an_etcd_that_takes_larger_transactions_gets_a_burst_in_fewer_and_a_refusal_names_the_flags() {
    // etcd takes 1,024 operations per transaction (its --max-txn-ops); member "a" is told
    // so, member "w" on another prefix claims more than etcd takes.
    let dir = common::temp_dir("failover-txnops");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let etcd = Etcd::start_with(&dir, &["--max-txn-ops", "1024"]);
    let prefix = format!("/test/txnops-{}", std::process::id());
    let a = member_with(&etcd, "a", &prefix, &dir, &["--etcd-max-txn-ops", "1024"]);
    wait_active(&[&a], Duration::from_secs(15));
    let _x = cross_node(a.addr, 90);
    // 300 arrivals: one key each (a game node's whole entry: name, facts and slot), and one
    // for the cross node.
    let told = burst_told(&a, 1, 300, Duration::from_secs(30));
    assert_eq!(told.len(), 300);
    let counts = || {
        let (_, text) = http(a.admin, "GET", "/metrics", "").expect("metrics");
        let m = |name: &str| metric(&text, name).unwrap_or_else(|| panic!("{name}"));
        (
            m("login_node_store_txn_ops_count"),
            m("login_node_store_txn_ops_sum"),
            m("login_node_store_txn_ops_bucket{le=\"128\"}"),
        )
    };
    let (txns, ops, at_most_128) = counts();
    assert!(
        (301.0..=310.0).contains(&ops),
        "{ops} keys written for 300 arrivals"
    );
    // A whitelist change of 1,000 entries is one batch of 1,001 keys: one transaction here,
    // where etcd's default would take eight.
    let entries: Vec<String> = (0..1000).map(|i| format!("player{i}")).collect();
    let body = serde_json::json!({ "entries": entries }).to_string();
    let answer = http(a.admin, "POST", "/api/whitelist", &body);
    assert!(matches!(answer, Some((200, _))), "{answer:?}");
    let (txns_after, ops_after, at_most_128_after) = counts();
    assert_eq!(ops_after - ops, 1001.0);
    assert_eq!(
        txns_after - txns,
        1.0,
        "1,001 keys in more than one transaction"
    );
    assert_eq!(
        at_most_128_after, at_most_128,
        "the transaction was counted at 128 or fewer"
    );
    assert_told_matches(&told, &a);

    let prefix_w = format!("/test/txnops-w-{}", std::process::id());
    let w = member_with(&etcd, "w", &prefix_w, &dir, &["--etcd-max-txn-ops", "4096"]);
    wait_active(&[&w], Duration::from_secs(15));
    // A whitelist change of 2,000 entries is one batch of 2,001 keys: more than etcd takes.
    // Its answer is held (never a 200), and the log says why.
    let entries: Vec<String> = (0..2000).map(|i| format!("player{i}")).collect();
    let body = serde_json::json!({ "entries": entries }).to_string();
    let answer = http(w.admin, "POST", "/api/whitelist", &body);
    assert!(
        answer.as_ref().is_none_or(|(status, _)| *status != 200),
        "{answer:?}"
    );
    let log_path = dir.join("w.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("etcd's --max-txn-ops is lower than --etcd-max-txn-ops") {
            break;
        }
        assert!(Instant::now() < deadline, "no hint in the log:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop((a, w));
    drop(etcd);
    if std::env::var_os("KEEP_FAILOVER_LOGS").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn sigterm_while_etcd_is_unreachable_kicks_the_nodes_within_the_lease() {
    let mut group = Group::start("termdown", 1);
    let a = &group.members[0];
    wait_active(&[a], Duration::from_secs(15));
    let _x = cross_node(a.addr, 90);
    let mut online = send_game(a.addr, 1).expect("game node");
    assert!(matches!(
        hear(&mut online, Duration::from_secs(5)),
        Heard::Assign(..)
    ));
    for i in 0..3 {
        group.etcd.stop(i);
    }
    // An arrival whose batch cannot be written now.
    let _held = send_game(a.addr, 2).expect("game node");
    signal(&a.proc, "-TERM");
    let asked = Instant::now();
    assert_eq!(hear(&mut online, Duration::from_secs(15)), Heard::Kick(6));
    assert!(
        asked.elapsed() < Duration::from_secs(TTL + 1),
        "KICK 6 {:?} after SIGTERM (lease TTL {TTL} s)",
        asked.elapsed()
    );
}

/// Found while folding a game node's keys into one: two changes of one key in one batch (a
/// whitelist entry added and removed while etcd was slow) made a transaction etcd refuses
/// ("duplicate key given in txn request"), retried forever: the group wedged.
#[test]
fn two_changes_of_one_key_in_one_batch_are_written_as_one() {
    let group = Group::start("dupkey", 1);
    let a = &group.members[0];
    wait_active(&[a], Duration::from_secs(15));
    let listed = |entry: &str| {
        http(a.admin, "GET", "/api/whitelist", "")
            .is_some_and(|(_, body)| body.contains(&format!("\"{entry}\"")))
    };
    let change = |method: &'static str, entry: &'static str| {
        let admin = a.admin;
        let body = format!(r#"{{"entry": "{entry}"}}"#);
        std::thread::spawn(move || http(admin, method, "/api/whitelist", &body))
    };
    for m in group.etcd.members.iter().flatten() {
        signal(m, "-STOP");
    }
    // "a" is in flight (stuck); "x" added then removed accumulate in the next batch.
    let first = change("POST", "a");
    common::wait_until("a applied", Duration::from_secs(5), || listed("a"));
    let add = change("POST", "x");
    common::wait_until("x applied", Duration::from_secs(5), || listed("x"));
    let remove = change("DELETE", "x");
    common::wait_until("x removed", Duration::from_secs(5), || !listed("x"));
    for m in group.etcd.members.iter().flatten() {
        signal(m, "-CONT");
    }
    for (what, t) in [("add a", first), ("add x", add), ("remove x", remove)] {
        let answer = t.join().expect("thread");
        assert!(
            matches!(&answer, Some((200, _))),
            "{what}: {answer:?} (the batch was refused?)"
        );
    }
    let stored: Vec<String> = etcd_keys(&group.etcd, &group.prefix, "whitelist/")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(stored, [format!("{}/state/whitelist/a", group.prefix)]);
}

/// etcd's own view: exactly games 1 and 2 with slots, at 90/1 and 90/2.
fn assert_games_1_and_2_hold_90_1_and_90_2(group: &Group) {
    let mut slots = etcd_assignments(&group.etcd, &group.prefix);
    slots.sort();
    let p = &group.prefix;
    assert_eq!(
        slots,
        [
            (format!("{p}/state/server/1"), (90, 1)),
            (format!("{p}/state/server/2"), (90, 2))
        ]
    );
}

/// A group whose etcd holds the earlier layout (three keys per game node): the member that
/// becomes active loads it, rewrites it as one `server/` key per node, and serves it.
#[test]
fn a_group_state_of_the_earlier_layout_is_rewritten_when_a_member_takes_over() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut group = Group::start("layout", 0);
    let etcd: SocketAddr = group.etcd.clients[0]
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let pieces: [(&str, &[u8]); 3] = [
        ("assign/1", &[0, 0, 0, 90, 0, 1]),
        ("name/1", b"S1"),
        ("assign/2", &[0, 0, 0, 90, 0, 2]),
    ];
    for (k, v) in pieces {
        let key = format!("{}/state/{k}", group.prefix);
        let body = serde_json::json!({"key": b64.encode(key), "value": b64.encode(v)});
        let answer = http(etcd, "POST", "/v3/kv/put", &body.to_string());
        assert!(matches!(answer, Some((200, _))), "{answer:?}");
    }
    let a = member(&group.etcd, "a", &group.prefix, &group.dir);
    group.members.push(a);
    let a = &group.members[0];
    wait_active(&[a], Duration::from_secs(15));
    let _x = cross_node(a.addr, 90);
    let mut g1 = send_game(a.addr, 1).expect("connect");
    assert_eq!(hear(&mut g1, REPLY), Heard::Assign(90, 1));
    for kind in ["assign/", "name/", "game/"] {
        let left = etcd_keys(&group.etcd, &group.prefix, kind);
        assert!(left.is_empty(), "{kind} keys left: {left:?}");
    }
    assert_games_1_and_2_hold_90_1_and_90_2(&group);
}

/// Found by review: a copy of a transaction that reached etcd late (stuck in a paused etcd
/// member or a proxy, or resent after a timeout while the first copy was still on its way)
/// was applied after newer ones: the fence compared only the election key, which does not
/// change within a term, so a moved node could land back on a slot another had taken. Every
/// data transaction now also compares the order key's last write, and writes it.
#[test]
fn a_transaction_that_reaches_etcd_late_is_refused_by_the_order_fence() {
    use login_node::state::etcd::TxnOp;
    use login_node::state::grpc::{Fence, KvClient, TxnOutcome};
    let group = Group::start("late", 1);
    let a = &group.members[0];
    wait_active(&[a], Duration::from_secs(15));
    let _x = cross_node(a.addr, 90);
    let mut g1 = send_game(a.addr, 1).expect("connect");
    assert_eq!(hear(&mut g1, REPLY), Heard::Assign(90, 1));
    let base = group.etcd.clients[0].clone();
    let mut kv = KvClient::new(Duration::from_secs(3));
    let leader_key = format!("{}/leader", group.prefix).into_bytes();
    let order_key = format!("{}/order", group.prefix).into_bytes();
    let last_write = |kv: &mut KvClient, key: &[u8]| {
        kv.get(&base, key)
            .expect("etcd answers")
            .map(|(revision, _)| revision)
            .expect("written")
    };
    // A transaction decided now, delivered after the group wrote more.
    let (leader_rev, order_then) = (
        last_write(&mut kv, &leader_key),
        last_write(&mut kv, &order_key),
    );
    let mut g2 = send_game(a.addr, 2).expect("connect");
    assert_eq!(hear(&mut g2, REPLY), Heard::Assign(90, 2));
    let order_now = last_write(&mut kv, &order_key);
    assert!(order_now > order_then, "game 2's write moved the order key");
    let stale = Fence {
        leader_key: &leader_key,
        create_revision: leader_rev,
        order_key: &order_key,
        order_revision: order_then,
        id: b"a late copy",
    };
    // Game 1's entry with game 2's slot: a slot held twice, if it landed.
    let entry = vec![4, 0, 0, 0, 90, 0, 2];
    let data_prefix = format!("{}/state/", group.prefix).into_bytes();
    let outcome = kv
        .txn(
            &base,
            &stale,
            &data_prefix,
            &[TxnOp::Put(b"server/1".to_vec(), entry)],
        )
        .expect("etcd answers");
    assert!(
        matches!(&outcome, TxnOutcome::NotApplied { leader_created: Some(l), order: Some((o, _)) }
            if *l == leader_rev && *o == order_now),
        "{outcome:?}"
    );
    assert_games_1_and_2_hold_90_1_and_90_2(&group);
}

/// Found by review: the JSON gateway's client took `http_proxy` from the environment (the
/// gRPC one did not), so a member behind such a setting never won the election.
#[test]
fn a_proxy_in_the_environment_is_not_used_for_etcd() {
    let dir = common::temp_dir("failover-proxy");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let etcd = Etcd::start(&dir);
    let prefix = format!("/test/proxy-{}", std::process::id());
    let dead = format!("http://127.0.0.1:{}", free_port());
    let env = [
        ("http_proxy", dead.as_str()),
        ("HTTP_PROXY", dead.as_str()),
        ("ALL_PROXY", dead.as_str()),
    ];
    let a = member_with_env(&etcd, "a", &prefix, &dir, &[], &env);
    wait_active(&[&a], Duration::from_secs(15));
    let _x = cross_node(a.addr, 90);
    let mut g1 = send_game(a.addr, 1).expect("connect");
    assert_eq!(hear(&mut g1, REPLY), Heard::Assign(90, 1));
    drop(a);
    drop(etcd);
    if std::env::var_os("KEEP_FAILOVER_LOGS").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
