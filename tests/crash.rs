//! Crash safety: the `login-node` binary is killed with SIGKILL while game nodes keep
//! arriving; after a restart on the same state directory, every game node that had received
//! a CROSS_ASSIGN gets the same cross_server_id and cross_pos again, and no slot is held by
//! two game nodes.
//!
//! The test can fail: after the restart, new game nodes arrive first and the old ones come
//! back later in reverse order reporting cross_server_id 0, so a server that forgot its
//! records would hand the old slots to the new nodes by the allocation rule alone.
//!
//! Operators change the cluster during the kills too: moves of game nodes (a 200 means the
//! move is durable; a move whose answer was cut off by the kill may have landed or not, and
//! the restarted node must show one of the two), capacity overrides and drains of the other
//! cross nodes.
//!
//! `CRASH_CYCLES` sets the kill/restart cycles (default 6; the fault suite runs it with 50:
//! `CRASH_CYCLES=50 cargo test --release --test crash -- --nocapture`).

mod common;

use common::child::{free_addr, Proc};
use common::{cross_node, cross_slots, parse_response, temp_dir, REPLY, TOKEN};
use login_node::client::{Client, ServerMessage};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_login-node");
const CROSSES: [u32; 3] = [90, 91, 92];
/// Game nodes sent per burst, without waiting for answers in between.
const BURST: u32 = 25;
const ADMIN_TOKEN: &str = "crash-admin-token";

fn start(addr: SocketAddr, admin: SocketAddr, dir: &Path) -> Proc {
    let child = Command::new(BIN)
        .args([
            "--admin-listen",
            &admin.to_string(),
            "--admin-token",
            ADMIN_TOKEN,
            "--listen",
            &addr.to_string(),
            "--token",
            TOKEN,
            "--state-dir",
            &dir.display().to_string(),
            "--log-level",
            "warn",
            "--default-capacity",
            "20000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let p = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "server never came up");
        std::thread::sleep(Duration::from_millis(10));
    }
    p
}

/// Sends AUTH and GAME_INFO (reporting no assignment) without waiting.
fn send_game(addr: SocketAddr, id: u32) -> Option<Client> {
    common::send_game(addr, id, "dev")
}

/// Reads until CROSS_ASSIGN (Some) or until the connection ends or goes quiet (None).
fn read_assign(c: &mut Client, wait: Duration) -> Option<(u32, u16)> {
    loop {
        match c.recv(wait) {
            Ok(Some(ServerMessage::CrossAssign {
                cross_server_id,
                cross_pos,
                ..
            })) => return Some((cross_server_id, cross_pos)),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

/// Sends one admin request without waiting for the answer.
fn send_admin(admin: SocketAddr, method: &str, path: &str, body: &str) -> Option<TcpStream> {
    let mut s = TcpStream::connect(admin).ok()?;
    s.set_read_timeout(Some(REPLY)).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    Some(s)
}

/// The answer to a request sent with [`send_admin`], if the server gave one whole.
fn admin_answer(s: Option<TcpStream>) -> Option<(u16, serde_json::Value)> {
    let mut bytes = Vec::new();
    s?.read_to_end(&mut bytes).ok()?;
    if bytes.is_empty() {
        return None;
    }
    let (status, body) = parse_response(&bytes);
    Some((status, serde_json::from_str(&body).unwrap_or_default()))
}

/// An operator change during a burst: a move of a known game node (most often), or a
/// capacity override or drain flag on 91 or 92 (90 stays open so arrivals are never stuck).
enum OperatorOp {
    /// (game, target cross).
    Move(u32, u32),
    Other,
}

fn start_operator_op(
    admin: SocketAddr,
    told: &HashMap<u32, (u32, u16)>,
    random: &mut impl FnMut() -> u64,
) -> (OperatorOp, Option<TcpStream>) {
    let r = random();
    let cross = 91 + (r / 7 % 2) as u32;
    if !r.is_multiple_of(4) && !told.is_empty() {
        let ids: Vec<u32> = told.keys().copied().collect();
        let serv = ids[(r / 3 % ids.len() as u64) as usize];
        let to = CROSSES[(r / 11 % 3) as usize];
        let body = format!(r#"{{"serv_id": {serv}, "cross_server_id": {to}}}"#);
        return (
            OperatorOp::Move(serv, to),
            send_admin(admin, "POST", "/api/assign", &body),
        );
    }
    let (path, body) = if r.is_multiple_of(8) {
        let capacity = if r.is_multiple_of(3) {
            0
        } else {
            1 + r / 13 % 20_000
        };
        let body = format!(r#"{{"capacity": {capacity}}}"#);
        (format!("/api/cross/{cross}/capacity"), body)
    } else {
        let on = (r / 17).is_multiple_of(2);
        let body = format!(r#"{{"drain": {on}}}"#);
        (format!("/api/cross/{cross}/drain"), body)
    };
    (OperatorOp::Other, send_admin(admin, "PUT", &path, &body))
}

/// The slot a `POST /api/assign` answered.
fn moved_to(v: &serde_json::Value) -> (u32, u16) {
    (
        v["cross_server_id"].as_u64().expect("cross") as u32,
        v["cross_pos"].as_u64().expect("pos") as u16,
    )
}

/// Every game node's recorded slot, as the admin API shows it.
fn recorded_slots(admin: SocketAddr) -> HashMap<u32, (u32, u16)> {
    let (status, v) = admin_answer(send_admin(admin, "GET", "/api/cross", "")).expect("answer");
    assert_eq!(status, 200);
    cross_slots(&v).into_iter().collect()
}

/// After a restart: each move the kill cut off either landed (the game node is on the
/// target cross node now) or did not (it keeps its slot); nothing else.
fn resolve(
    told: &mut HashMap<u32, (u32, u16)>,
    uncertain: &mut Vec<(u32, (u32, u16), u32)>,
    admin: SocketAddr,
) {
    if uncertain.is_empty() {
        return;
    }
    let slots = recorded_slots(admin);
    for (serv, before, target) in uncertain.drain(..) {
        let now = slots.get(&serv).copied().expect("still assigned");
        assert!(
            now == before || now.0 == target,
            "game {serv}: was {before:?}, a move to {target} was cut off, now {now:?}"
        );
        told.insert(serv, now);
    }
}

/// Reads every client round-robin until each has its CROSS_ASSIGN or is closed (bounded:
/// the server is being killed).
fn watch_assigns(mut clients: Vec<(u32, Client)>) -> Vec<(u32, (u32, u16))> {
    let deadline = Instant::now() + REPLY;
    let mut got = Vec::new();
    while !clients.is_empty() && Instant::now() < deadline {
        clients.retain_mut(|(id, c)| match c.recv(Duration::from_millis(1)) {
            Ok(Some(ServerMessage::CrossAssign {
                cross_server_id,
                cross_pos,
                ..
            })) => {
                got.push((*id, (cross_server_id, cross_pos)));
                false
            }
            Ok(Some(_)) => true,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => true,
            _ => false,
        });
    }
    got
}

/// Game nodes `ids` return (BURST at a time, reporting nothing): each is told exactly
/// what `told` says it was told before.
fn assert_return_as_told(
    addr: SocketAddr,
    ids: &[u32],
    told: &HashMap<u32, (u32, u16)>,
    when: &str,
) {
    for chunk in ids.chunks(BURST as usize) {
        let mut clients: Vec<(u32, Client)> = chunk
            .iter()
            .map(|&id| (id, send_game(addr, id).expect("connect")))
            .collect();
        for (id, c) in &mut clients {
            let got = read_assign(c, REPLY);
            assert_eq!(
                got.as_ref(),
                told.get(id),
                "{when}: game {id} was told {:?} before the crash, now {got:?}",
                told.get(id)
            );
        }
    }
}

fn assert_no_shared_slot(assigned: &HashMap<u32, (u32, u16)>) {
    let mut holders: BTreeMap<(u32, u16), u32> = BTreeMap::new();
    for (&serv, &slot) in assigned {
        if let Some(other) = holders.insert(slot, serv) {
            panic!("slot {slot:?} handed to both game {other} and game {serv}");
        }
    }
}

#[test]
fn sigkill_while_nodes_arrive_loses_no_assignment_and_shares_no_slot() {
    let dir = temp_dir("crash");
    let addr = free_addr();
    let admin = free_addr();
    // Moves whose answer the kill cut off: (game, slot before, target cross).
    let mut uncertain: Vec<(u32, (u32, u16), u32)> = Vec::new();
    let (mut moves_durable, mut moves_uncertain, mut other_ops) = (0, 0, 0);
    // Every assignment any game node was ever told, across all cycles.
    let mut told: HashMap<u32, (u32, u16)> = HashMap::new();
    let mut next_id = 1u32;
    let mut seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let cycles: u64 = std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    for cycle in 0..cycles {
        let mut server = start(addr, admin, &dir);
        let crosses: Vec<Client> = CROSSES.iter().map(|&id| cross_node(addr, id)).collect();
        // A move cut off by the last kill either landed or did not: the record says which,
        // and it must be one of the two.
        if !uncertain.is_empty() {
            resolve(&mut told, &mut uncertain, admin);
        }

        // 1. New game nodes first (they would take forgotten slots).
        let mut fresh = Vec::new();
        for _ in 0..BURST {
            fresh.push((next_id, send_game(addr, next_id).expect("connect")));
            next_id += 1;
        }
        for (id, c) in &mut fresh {
            let got = read_assign(c, REPLY).expect("a new game node is assigned");
            told.insert(*id, got);
        }
        // 2. Earlier game nodes return (up to 150 picked at random, then in reverse order),
        //    reporting nothing.
        let mut old: Vec<u32> = told.keys().copied().filter(|id| *id < fresh[0].0).collect();
        while old.len() > 150 {
            let i = (random() % old.len() as u64) as usize;
            old.swap_remove(i);
        }
        old.sort_unstable_by(|a, b| b.cmp(a));
        assert_return_as_told(addr, &old, &told, &format!("cycle {cycle}"));
        let online: HashMap<u32, (u32, u16)> = told.clone();
        assert_no_shared_slot(&online);
        drop(fresh);

        // 3. More arrive in bursts; SIGKILL lands while a burst is in flight.
        let bursts_before_kill = 1 + random() % 4;
        // How long the last burst took to be told: the kill lands within twice that, so it
        // cuts a burst's handling at a random point on a fast build as on a slow one.
        let mut burst_us = 20_000u64;
        for burst in 0..=bursts_before_kill {
            let mut clients: Vec<(u32, Client)> = (0..BURST)
                .filter_map(|_| {
                    let id = next_id;
                    next_id += 1;
                    send_game(addr, id).map(|c| (id, c))
                })
                .collect();
            let (op, answer) = start_operator_op(admin, &told, &mut random);
            let burst_start = Instant::now();
            if burst == bursts_before_kill {
                // Read the burst's answers while the kill lands (a reset connection loses
                // what it had not read), at a random instant within the burst's handling.
                let sent = clients.len();
                let watcher = std::thread::spawn(move || watch_assigns(clients));
                std::thread::sleep(Duration::from_micros(random() % (2 * burst_us + 1)));
                server.0.kill().expect("SIGKILL");
                server.0.wait().expect("reaped");
                match (op, admin_answer(answer)) {
                    (OperatorOp::Move(serv, _), Some((200, v))) => {
                        told.insert(serv, moved_to(&v));
                        moves_durable += 1;
                    }
                    (OperatorOp::Move(serv, to), None) => {
                        uncertain.push((serv, told[&serv], to));
                        moves_uncertain += 1;
                    }
                    _ => other_ops += 1,
                }
                // Whatever was told before the kill must hold after the restart.
                let mut told_now = 0;
                for (id, got) in watcher.join().expect("watcher") {
                    told.insert(id, got);
                    told_now += 1;
                }
                eprintln!(
                    "cycle {cycle}: killed with {told_now} of {sent} game nodes of the last burst told"
                );
            } else {
                for (id, c) in &mut clients {
                    let got = read_assign(c, REPLY).expect("assigned");
                    told.insert(*id, got);
                }
                burst_us = burst_start.elapsed().as_micros() as u64;
                match (op, admin_answer(answer)) {
                    (OperatorOp::Move(serv, _), Some((200, v))) => {
                        told.insert(serv, moved_to(&v));
                        moves_durable += 1;
                    }
                    (_, Some((status, v))) => {
                        assert!(matches!(status, 200 | 409), "{status} {v}");
                        other_ops += 1;
                    }
                    (_, None) => panic!("an admin request got no answer from a live node"),
                }
            }
        }
        assert_no_shared_slot(&told);
        drop(crosses);
    }
    // A last restart: everyone told anything comes back to exactly that.
    let _server = start(addr, admin, &dir);
    let _crosses: Vec<Client> = CROSSES.iter().map(|&id| cross_node(addr, id)).collect();
    resolve(&mut told, &mut uncertain, admin);
    assert_no_shared_slot(&told);
    eprintln!(
        "operator changes: {moves_durable} moves answered 200, {moves_uncertain} cut off by a kill, {other_ops} capacity/drain changes or refusals"
    );
    let mut ids: Vec<u32> = told.keys().copied().collect();
    ids.sort_unstable();
    assert_return_as_told(addr, &ids, &told, "the last restart");
    std::fs::remove_dir_all(&dir).ok();
}
