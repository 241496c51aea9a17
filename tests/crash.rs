//! Crash safety: the `login-node` binary is killed with SIGKILL while game nodes keep
//! arriving; after a restart on the same state directory, every game node that had received
//! a CROSS_ASSIGN gets the same cross_server_id and cross_pos again, and no slot is held by
//! two game nodes.
//!
//! The test can fail: after the restart, new game nodes arrive first and the old ones come
//! back later in reverse order reporting cross_server_id 0, so a server that forgot its
//! records would hand the old slots to the new nodes by the allocation rule alone.
//!
//! `CRASH_CYCLES` sets the kill/restart cycles (default 6; the fault suite runs it with 50:
//! `CRASH_CYCLES=50 cargo test --release --test crash -- --nocapture`).

mod common;

use common::{temp_dir, REPLY, TOKEN};
use login_node::client::{Client, ServerMessage};
use login_node::proto::{CrossInfo, NodeType, U32List};
use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_login-node");
const CROSSES: [u32; 3] = [90, 91, 92];
/// Game nodes sent per burst, without waiting for answers in between.
const BURST: u32 = 25;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

fn start(addr: SocketAddr, dir: &Path) -> Proc {
    let child = Command::new(BIN)
        .args([
            "--listen",
            &addr.to_string(),
            "--token",
            TOKEN,
            "--state-dir",
            &dir.display().to_string(),
            "--admin-listen",
            "off",
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

fn cross(addr: SocketAddr, id: u32) -> Client {
    let mut c = Client::connect(addr, REPLY).expect("connect");
    assert_eq!(
        c.auth(NodeType::Cross, id, "dev", TOKEN, None)
            .expect("auth")
            .code,
        0
    );
    let name = format!("cross{id}@127.0.0.1");
    c.send_cross_info(
        &CrossInfo {
            id,
            cross_plat: "p",
            cross_server_id: id,
            cross_node_name: &name,
            capacity: 0,
            game_server_list: U32List::EMPTY,
        },
        &[],
    )
    .expect("info");
    c
}

/// Sends AUTH and GAME_INFO (reporting no assignment) without waiting.
fn send_game(addr: SocketAddr, id: u32) -> Option<Client> {
    let mut c = Client::connect(addr, REPLY).ok()?;
    c.send_auth(NodeType::Game as u8, id, "dev", TOKEN, None)
        .ok()?;
    c.send_game_info(&common::game_info(id, "p")).ok()?;
    Some(c)
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
        let mut server = start(addr, &dir);
        let crosses: Vec<Client> = CROSSES.iter().map(|&id| cross(addr, id)).collect();

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
        for chunk in old.chunks(BURST as usize) {
            let mut clients: Vec<(u32, Client)> = chunk
                .iter()
                .map(|&id| (id, send_game(addr, id).expect("connect")))
                .collect();
            for (id, c) in &mut clients {
                let got = read_assign(c, REPLY).expect("a returning node is answered");
                assert_eq!(
                    Some(&got),
                    told.get(id),
                    "cycle {cycle}: game {id} was told {:?} before the crash, now {got:?}",
                    told.get(id)
                );
            }
        }
        let online: HashMap<u32, (u32, u16)> = told.clone();
        assert_no_shared_slot(&online);
        drop(fresh);

        // 3. More arrive in bursts; SIGKILL lands while a burst is in flight.
        let bursts_before_kill = 1 + random() % 4;
        for burst in 0..=bursts_before_kill {
            let mut clients: Vec<(u32, Client)> = (0..BURST)
                .filter_map(|_| {
                    let id = next_id;
                    next_id += 1;
                    send_game(addr, id).map(|c| (id, c))
                })
                .collect();
            if burst == bursts_before_kill {
                // A random instant within the burst's handling.
                std::thread::sleep(Duration::from_micros(random() % 3_000));
                server.0.kill().expect("SIGKILL");
                server.0.wait().expect("reaped");
                // Whatever was told before the kill must hold after the restart.
                let mut told_now = 0;
                for (id, c) in &mut clients {
                    if let Some(got) = read_assign(c, Duration::from_millis(500)) {
                        told.insert(*id, got);
                        told_now += 1;
                    }
                }
                eprintln!(
                    "cycle {cycle}: killed with {} of {} game nodes of the last burst told",
                    told_now,
                    clients.len()
                );
            } else {
                for (id, c) in &mut clients {
                    let got = read_assign(c, REPLY).expect("assigned");
                    told.insert(*id, got);
                }
            }
        }
        assert_no_shared_slot(&told);
        drop(crosses);
    }
    // A last restart: everyone told anything comes back to exactly that.
    let _server = start(addr, &dir);
    let _crosses: Vec<Client> = CROSSES.iter().map(|&id| cross(addr, id)).collect();
    let mut ids: Vec<u32> = told.keys().copied().collect();
    ids.sort_unstable();
    for chunk in ids.chunks(BURST as usize) {
        let mut clients: Vec<(u32, Client)> = chunk
            .iter()
            .map(|&id| (id, send_game(addr, id).expect("connect")))
            .collect();
        for (id, c) in &mut clients {
            assert_eq!(read_assign(c, REPLY).as_ref(), told.get(id), "game {id}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
