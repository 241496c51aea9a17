//! The Rust `NodeClient` against a fake login node that misbehaves on purpose: one mode per
//! misbehaviour (interrupted snapshot, silence, no reading, kick right after login). The fake
//! encodes frames by hand from the contract, independent of the crate's encoders.

mod common;

use common::node_client::{fast, game_spec, wait_for_event};
use login_node::client::node::{ClientEvent, NodeClient, Options};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the fake does with one connection.
#[derive(Clone, Debug)]
enum Mode {
    /// AUTH_RESULT 0 announcing (interval, timeout) in seconds, then answers heartbeats and
    /// sends `frames` (whole payloads) once INFO is in; then keeps answering until closed.
    Online {
        interval: u16,
        timeout: u16,
        frames: Vec<Vec<u8>>,
    },
    /// Like `Online`, but closes the connection right after sending `frames`.
    OnlineThenClose {
        interval: u16,
        timeout: u16,
        frames: Vec<Vec<u8>>,
    },
    /// Reads AUTH and never answers anything.
    SilentAfterAccept,
    /// AUTH_RESULT 0, then reads everything and answers nothing (a SIGSTOPped node looks so).
    SilentAfterAuth { interval: u16, timeout: u16 },
    /// AUTH_RESULT 0, then stops reading altogether (the client's writes back up).
    NeverReads { interval: u16, timeout: u16 },
    /// AUTH_RESULT 0, then KICK 3 at once.
    KickAfterAuth,
    /// AUTH_RESULT 0 announcing (1 s, `timeout` s), heartbeats answered for `ms`, then
    /// closed.
    OnlineFor { timeout: u16, ms: u64 },
}

/// A fake login node on an ephemeral loopback port; connection `i` uses `modes[i]` (the
/// last mode for every later connection).
struct FakeLogin {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeLogin {
    fn start(modes: Vec<Mode>) -> FakeLogin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, halt) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut peers = Vec::new();
            while !halt.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let i = count.fetch_add(1, Ordering::AcqRel);
                        let mode = modes[i.min(modes.len() - 1)].clone();
                        let halt = halt.clone();
                        peers.push(std::thread::spawn(move || serve(stream, mode, &halt)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for p in peers {
                let _ = p.join();
            }
        });
        FakeLogin {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::Acquire)
    }
}

impl Drop for FakeLogin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

fn auth_result(code: u8, interval: u16, timeout: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0x01, code];
    p.extend_from_slice(&1_700_000_000u32.to_be_bytes());
    p.extend_from_slice(&interval.to_be_bytes());
    p.extend_from_slice(&timeout.to_be_bytes());
    p
}

fn snapshot(version: u32, last: bool, entries: &[&str]) -> Vec<u8> {
    let mut p = vec![0x80, 0x06];
    p.extend_from_slice(&version.to_be_bytes());
    p.push(last as u8);
    p.extend_from_slice(&(entries.len() as u16).to_be_bytes());
    for e in entries {
        p.extend_from_slice(&(e.len() as u16).to_be_bytes());
        p.extend_from_slice(e.as_bytes());
    }
    p
}

/// Reads one frame's payload, or `None` when the peer closed, the fake is stopping, or
/// `within` passed.
fn read_frame(s: &mut TcpStream, within: Duration, halt: &AtomicBool) -> Option<Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut header = [0u8; 2];
    read_exact(s, &mut header, deadline, halt)?;
    let mut payload = vec![0u8; u16::from_be_bytes(header) as usize];
    read_exact(s, &mut payload, deadline, halt)?;
    Some(payload)
}

fn read_exact(
    s: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
    halt: &AtomicBool,
) -> Option<()> {
    let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
    let mut at = 0;
    while at < buf.len() {
        if halt.load(Ordering::Acquire) || Instant::now() >= deadline {
            return None;
        }
        match s.read(&mut buf[at..]) {
            Ok(0) => return None,
            Ok(n) => at += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return None,
        }
    }
    Some(())
}

const LONG: Duration = Duration::from_secs(30);

fn serve(mut s: TcpStream, mode: Mode, halt: &AtomicBool) {
    let Some(auth) = read_frame(&mut s, LONG, halt) else {
        return;
    };
    assert_eq!(&auth[..2], &[0, 1], "the first frame is AUTH");
    let send = |s: &mut TcpStream, payload: &[u8]| s.write_all(&frame(payload)).is_ok();
    match mode {
        Mode::Online {
            interval,
            timeout,
            ref frames,
        }
        | Mode::OnlineThenClose {
            interval,
            timeout,
            ref frames,
        } => {
            send(&mut s, &auth_result(0, interval, timeout));
            if read_frame(&mut s, LONG, halt).is_none() {
                return;
            }
            for f in frames {
                send(&mut s, f);
            }
            if matches!(mode, Mode::Online { .. }) {
                answer_heartbeats(&mut s, halt);
            }
        }
        Mode::SilentAfterAccept => while read_frame(&mut s, LONG, halt).is_some() {},
        Mode::SilentAfterAuth { interval, timeout } => {
            send(&mut s, &auth_result(0, interval, timeout));
            while read_frame(&mut s, LONG, halt).is_some() {}
        }
        Mode::NeverReads { interval, timeout } => {
            send(&mut s, &auth_result(0, interval, timeout));
            while !halt.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Mode::OnlineFor { timeout, ms } => {
            send(&mut s, &auth_result(0, 1, timeout));
            let until = Instant::now() + Duration::from_millis(ms);
            while Instant::now() < until {
                let left = until.saturating_duration_since(Instant::now());
                match read_frame(&mut s, left, halt) {
                    Some(p) if p.len() >= 10 && p[..2] == [0, 4] => {
                        let ack = [&[0x80, 0x04][..], &p[2..10]].concat();
                        send(&mut s, &ack);
                    }
                    Some(_) => {}
                    None if Instant::now() < until => return,
                    None => {}
                }
            }
        }
        Mode::KickAfterAuth => {
            send(&mut s, &auth_result(0, 1, 3));
            send(&mut s, &[0x80, 0xFF, 3]);
        }
    }
}

/// Echoes every HEARTBEAT's ts in an ACK until the peer closes or the fake stops.
fn answer_heartbeats(s: &mut TcpStream, halt: &AtomicBool) {
    while let Some(p) = read_frame(s, LONG, halt) {
        if p.len() >= 10 && p[..2] == [0, 4] {
            let mut ack = vec![0x80, 0x04];
            ack.extend_from_slice(&p[2..10]);
            if s.write_all(&frame(&ack)).is_err() {
                return;
            }
        }
    }
}

#[test]
fn an_interrupted_snapshot_leaves_no_stale_entries() {
    let fake = FakeLogin::start(vec![
        Mode::OnlineThenClose {
            interval: 1,
            timeout: 3,
            frames: vec![snapshot(5, false, &["old1", "old2"])],
        },
        Mode::Online {
            interval: 1,
            timeout: 3,
            frames: vec![snapshot(6, true, &["new1"])],
        },
    ]);
    let (client, events) = NodeClient::start(fake.addr, game_spec(1), fast()).expect("start");
    let loaded = wait_for_event(&events, "snapshot", Duration::from_secs(10), |e| {
        matches!(e, ClientEvent::WhitelistLoaded { .. })
    });
    assert_eq!(
        loaded,
        ClientEvent::WhitelistLoaded {
            version: 6,
            entries: 1
        }
    );
    assert!(client.is_whitelisted("new1"));
    assert!(
        !client.is_whitelisted("old1") && !client.is_whitelisted("old2"),
        "the part of the interrupted snapshot was discarded"
    );
    assert_eq!(client.whitelist_version(), 6);
    assert_eq!(fake.connections(), 2);
    client.stop();
}

fn reason_of(e: ClientEvent) -> String {
    match e {
        ClientEvent::Disconnected { reason, .. } => reason,
        other => panic!("not a disconnect: {other:?}"),
    }
}

#[test]
fn no_auth_result_means_a_dead_login_node() {
    let fake = FakeLogin::start(vec![Mode::SilentAfterAccept]);
    let options = Options {
        auth_timeout: Duration::from_millis(300),
        ..fast()
    };
    let (client, events) = NodeClient::start(fake.addr, game_spec(1), options).expect("start");
    let gone = wait_for_event(&events, "disconnect", Duration::from_secs(5), |e| {
        matches!(e, ClientEvent::Disconnected { .. })
    });
    assert!(reason_of(gone).contains("AUTH_RESULT"));
    client.stop();
}

#[test]
fn a_login_node_silent_for_its_heartbeat_timeout_is_left() {
    let fake = FakeLogin::start(vec![Mode::SilentAfterAuth {
        interval: 1,
        timeout: 2,
    }]);
    let (client, events) = NodeClient::start(fake.addr, game_spec(1), fast()).expect("start");
    wait_for_event(&events, "online", Duration::from_secs(5), |e| {
        matches!(e, ClientEvent::Online { .. })
    });
    let online_at = Instant::now();
    let gone = wait_for_event(&events, "disconnect", Duration::from_secs(6), |e| {
        matches!(e, ClientEvent::Disconnected { .. })
    });
    let after = online_at.elapsed();
    assert!(reason_of(gone).contains("silent"));
    assert!(
        after >= Duration::from_millis(1_900) && after < Duration::from_secs(4),
        "{after:?}"
    );
    client.stop();
}

#[test]
fn stop_returns_while_the_login_node_does_not_read() {
    let fake = FakeLogin::start(vec![Mode::NeverReads {
        interval: 1,
        timeout: 30,
    }]);
    let options = Options {
        write_timeout: Duration::from_millis(300),
        ..fast()
    };
    let (client, events) = NodeClient::start(fake.addr, game_spec(1), options).expect("start");
    wait_for_event(&events, "online", Duration::from_secs(5), |e| {
        matches!(e, ClientEvent::Online { .. })
    });
    // Far more than loopback socket buffers hold: the writes back up.
    let body = vec![0u8; 60_000];
    for _ in 0..600 {
        client.send_app(0x1000, &body);
    }
    std::thread::sleep(Duration::from_millis(500));
    let (done_tx, done) = std::sync::mpsc::channel();
    let t = Instant::now();
    std::thread::spawn(move || {
        client.stop();
        let _ = done_tx.send(());
    });
    done.recv_timeout(Duration::from_secs(5))
        .expect("stop() returned within the write timeout and a bit");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn a_kick_right_after_login_does_not_reset_the_backoff() {
    let fake = FakeLogin::start(vec![Mode::KickAfterAuth]);
    let (client, events) = NodeClient::start(fake.addr, game_spec(1), fast()).expect("start");
    std::thread::sleep(Duration::from_secs(2));
    client.stop();
    // 50, 100, 200, 400, 400 ... ms (jittered down to half): about 8 in 2 s; a reset after
    // every login made about 40.
    let n = fake.connections();
    assert!((2..=15).contains(&n), "{n} connections in 2 s");
    let waits: Vec<Duration> = events
        .try_iter()
        .filter_map(|e| match e {
            ClientEvent::Disconnected { retry_in, .. } => Some(retry_in),
            _ => None,
        })
        .collect();
    assert!(
        waits
            .iter()
            .skip(3)
            .all(|w| *w >= Duration::from_millis(200)),
        "the backoff grew: {waits:?}"
    );
}

#[test]
fn a_zero_backoff_is_refused() {
    let addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    for options in [
        Options {
            backoff_initial: Duration::ZERO,
            ..fast()
        },
        Options {
            backoff_max: Duration::from_millis(10),
            ..fast()
        },
        Options {
            write_timeout: Duration::ZERO,
            ..fast()
        },
    ] {
        let e = NodeClient::start(addr, game_spec(1), options.clone())
            .err()
            .unwrap_or_else(|| panic!("accepted {options:?}"));
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    }
}

#[test]
fn a_connection_that_stayed_online_a_heartbeat_timeout_resets_the_backoff() {
    let fake = FakeLogin::start(vec![Mode::OnlineFor {
        timeout: 1,
        ms: 1_300,
    }]);
    let (client, events) = NodeClient::start(fake.addr, game_spec(1), fast()).expect("start");
    let mut waits = Vec::new();
    while waits.len() < 3 {
        let e = wait_for_event(&events, "disconnect", Duration::from_secs(10), |e| {
            matches!(e, ClientEvent::Disconnected { .. })
        });
        if let ClientEvent::Disconnected { retry_in, .. } = e {
            waits.push(retry_in);
        }
    }
    client.stop();
    assert!(
        waits.iter().all(|w| *w <= Duration::from_millis(50)),
        "each session stayed online 1.3 s > its 1 s timeout: {waits:?}"
    );
}
