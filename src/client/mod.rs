//! A small blocking client for nodes written in Rust (and for tests): connect, authenticate,
//! send INFO and heartbeats, and read what the login node sends as owned values.
//!
//! ```no_run
//! use login_node::client::{Client, ServerMessage};
//! use login_node::proto::{GameInfo, NodeType};
//! use std::time::Duration;
//!
//! let mut c = Client::connect("127.0.0.1:7700".parse().unwrap(), Duration::from_secs(5))?;
//! let result = c.auth(NodeType::Game, 1001, "dev", "dev-token-change-me", None)?;
//! assert_eq!(result.code, 0);
//! c.send_game_info(&GameInfo {
//!     serv_id: 1001, serv_name: "S1001", open_time: 0, cross_plat: "p1",
//!     cross_server_id: 0, cross_pos: 0, addr: "10.0.0.5:8001",
//! })?;
//! while let Some(msg) = c.recv(Duration::from_secs(5))? {
//!     if let ServerMessage::CrossAssign { cross_node_name, .. } = msg {
//!         println!("use cross node {cross_node_name}");
//!         break;
//!     }
//! }
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod machine;
pub mod node;

use crate::proto::{
    self, auth, Auth, AuthResult, CrossInfo, GameInfo, Heartbeat, Message, NodeType, StatusReport,
};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A message from the login node, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// 0x8001.
    AuthResult(AuthResult),
    /// 0x8002.
    CrossAssign {
        /// cross_server_id.
        cross_server_id: u32,
        /// How to reach the cross node.
        cross_node_name: String,
        /// The cross node's platform.
        cross_plat: String,
        /// Slot.
        cross_pos: u16,
    },
    /// 0x8003: (serv_id, serv_name, cross_pos) per member.
    CrossMembers(Vec<(u32, String, u16)>),
    /// 0x8004: the echoed ts.
    HeartbeatAck(u64),
    /// 0x8005: maintenance flag.
    StatusPush(u8),
    /// 0x8006: one frame of a snapshot.
    WhitelistSnapshot {
        /// Version.
        version: u32,
        /// Last frame of the snapshot.
        last: bool,
        /// Entries in this frame.
        entries: Vec<String>,
    },
    /// 0x8007.
    WhitelistDelta {
        /// Version after the change.
        version: u32,
        /// 1 add, 2 remove.
        op: u8,
        /// The entry.
        entry: String,
    },
    /// 0x80FF: the reason; the server closes the connection after it.
    Kick(u8),
    /// An application command.
    App {
        /// Command.
        cmd: u16,
        /// Body.
        body: Vec<u8>,
    },
}

impl ServerMessage {
    /// Converts a decoded message; `None` for node -> login messages.
    pub fn from_message(m: &Message<'_>) -> Option<ServerMessage> {
        Some(match m {
            Message::AuthResult(r) => ServerMessage::AuthResult(*r),
            Message::CrossAssign(a) => ServerMessage::CrossAssign {
                cross_server_id: a.cross_server_id,
                cross_node_name: a.cross_node_name.to_string(),
                cross_plat: a.cross_plat.to_string(),
                cross_pos: a.cross_pos,
            },
            Message::CrossMembers(m) => ServerMessage::CrossMembers(
                m.iter()
                    .map(|m| (m.serv_id, m.serv_name.to_string(), m.cross_pos))
                    .collect(),
            ),
            Message::HeartbeatAck(h) => ServerMessage::HeartbeatAck(h.ts),
            Message::StatusPush(s) => ServerMessage::StatusPush(s.maintenance),
            Message::WhitelistSnapshot(s) => ServerMessage::WhitelistSnapshot {
                version: s.version,
                last: s.last == 1,
                entries: s.entries.iter().map(String::from).collect(),
            },
            Message::WhitelistDelta(d) => ServerMessage::WhitelistDelta {
                version: d.version,
                op: d.op,
                entry: d.entry.to_string(),
            },
            Message::Kick(k) => ServerMessage::Kick(k.reason),
            Message::App { cmd, body } => ServerMessage::App {
                cmd: *cmd,
                body: body.to_vec(),
            },
            // Node -> login: not a server message. Listed by name, with no wildcard, so that a
            // new `Message` variant does not compile until it is sorted into one side or the
            // other here.
            Message::Auth(_)
            | Message::GameInfo(_)
            | Message::CrossInfo(_)
            | Message::Heartbeat(_)
            | Message::StatusReport(_) => return None,
        })
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// The current unix time in seconds, as AUTH signs it.
pub fn unix_time() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as u32
}

/// A blocking connection to a login node.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl Client {
    /// Connects within `timeout`.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: Vec::new(),
            out: Vec::new(),
        })
    }

    /// The underlying socket (to shut it down, or send raw bytes in tests).
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Sends raw bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    fn flush_out(&mut self) -> io::Result<()> {
        let result = self.stream.write_all(&self.out);
        self.out.clear();
        result
    }

    /// Sends AUTH signed with `token` at `time` (default: now) and waits for AUTH_RESULT.
    pub fn auth(
        &mut self,
        node_type: NodeType,
        node_id: u32,
        plat: &str,
        token: &str,
        time: Option<u32>,
    ) -> io::Result<AuthResult> {
        self.send_auth(node_type as u8, node_id, plat, token, time)?;
        match self.recv(Duration::from_secs(10))? {
            Some(ServerMessage::AuthResult(r)) => Ok(r),
            Some(other) => Err(invalid(format!("expected AUTH_RESULT, got {other:?}"))),
            None => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }

    /// Sends AUTH without waiting for the result (`node_type` raw, to test unknown types).
    pub fn send_auth(
        &mut self,
        node_type: u8,
        node_id: u32,
        plat: &str,
        token: &str,
        time: Option<u32>,
    ) -> io::Result<()> {
        let time = time.unwrap_or_else(unix_time);
        let sign = auth::sign(node_id, time, token.as_bytes());
        Auth {
            node_type,
            node_id,
            plat,
            time,
            sign,
        }
        .encode(&mut self.out)
        .map_err(|e| invalid(e.to_string()))?;
        self.flush_out()
    }

    /// Sends GAME_INFO.
    pub fn send_game_info(&mut self, info: &GameInfo<'_>) -> io::Result<()> {
        info.encode(&mut self.out)
            .map_err(|e| invalid(e.to_string()))?;
        self.flush_out()
    }

    /// Sends CROSS_INFO (the list in `info` is ignored; `servers` is sent).
    pub fn send_cross_info(&mut self, info: &CrossInfo<'_>, servers: &[u32]) -> io::Result<()> {
        info.encode_with(servers, &mut self.out)
            .map_err(|e| invalid(e.to_string()))?;
        self.flush_out()
    }

    /// Sends HEARTBEAT with `ts`.
    pub fn send_heartbeat(&mut self, ts: u64) -> io::Result<()> {
        Heartbeat { ts }.encode(&mut self.out);
        self.flush_out()
    }

    /// Sends STATUS_REPORT.
    pub fn send_status(&mut self, online: u32) -> io::Result<()> {
        StatusReport { online }.encode(&mut self.out);
        self.flush_out()
    }

    /// Sends an application command.
    pub fn send_app(&mut self, cmd: u16, body: &[u8]) -> io::Result<()> {
        Message::App { cmd, body }
            .encode(&mut self.out)
            .map_err(|e| invalid(e.to_string()))?;
        self.flush_out()
    }

    /// Waits up to `timeout` for the next message. `Ok(None)`: the server closed the
    /// connection; `Err(TimedOut)`: nothing arrived in time.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<Option<ServerMessage>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((payload, used)) = proto::parse_frame(&self.buf, proto::MAX_PAYLOAD)
                .map_err(|e| invalid(e.to_string()))?
            {
                let msg = Message::decode(payload).map_err(|e| invalid(e.to_string()))?;
                let owned = ServerMessage::from_message(&msg)
                    .ok_or_else(|| invalid(format!("not a server message: {msg:?}")))?;
                self.buf.drain(..used);
                return Ok(Some(owned));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(io::ErrorKind::TimedOut.into())
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads messages until one matches `pred`, returning it (and dropping the others).
    pub fn recv_until(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&ServerMessage) -> bool,
    ) -> io::Result<ServerMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left)? {
                Some(m) if pred(&m) => return Ok(m),
                Some(_) => {}
                None => return Err(io::ErrorKind::UnexpectedEof.into()),
            }
        }
    }

    /// True once the server has closed the connection (reads EOF within `timeout`), skipping
    /// any messages still in flight.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Ok(None) => return true,
                Ok(Some(_)) => {}
                Err(e) => return e.kind() != io::ErrorKind::TimedOut,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::cmd;

    /// Every message `command` can carry, decoded from a zeroed body (empty strings and lists).
    fn zeroed(command: u16, payload: &mut Vec<u8>) -> Message<'_> {
        payload.clear();
        payload.extend_from_slice(&command.to_be_bytes());
        payload.extend_from_slice(&[0; 64]);
        Message::decode(payload).expect("a zeroed body decodes")
    }

    #[test]
    fn only_login_to_node_messages_are_server_messages() {
        let mut payload = Vec::new();
        let node_side = cmd::NODE_TO_LOGIN;
        for command in node_side {
            let m = zeroed(command, &mut payload);
            assert_eq!(ServerMessage::from_message(&m), None, "{m:?}");
        }
        // Application commands go both ways; from the login node they are server messages.
        let login_side = cmd::LOGIN_TO_NODE.into_iter().chain([cmd::APP_FIRST]);
        for command in login_side {
            let m = zeroed(command, &mut payload);
            assert!(ServerMessage::from_message(&m).is_some(), "{m:?}");
        }
    }
}
