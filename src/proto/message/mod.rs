//! The messages of protocol v1 (contract section 4): one struct per command, decoded from a
//! body without allocating (strings and lists borrow the input) and encoded as whole frames
//! appended to a `Vec<u8>`.

use super::frame::{begin_frame, end_frame, split_payload, FrameTooLarge};
use super::wire::{put_u16, DecodeError};
use std::fmt;

mod codes;
mod login_to_node;
mod node_to_login;
#[cfg(test)]
mod tests;

pub use codes::{cmd, AuthCode, KickReason, NodeType};
pub use login_to_node::{
    AuthResult, CrossAssign, CrossMembers, Kick, Member, StatusPush, StrList, WhitelistDelta,
    WhitelistSnapshot,
};
pub use node_to_login::{Auth, CrossInfo, GameInfo, Heartbeat, StatusReport, U32List};

/// Appends a `list<T>` (a `u16` count, then each item as `put_item` writes it) as the last
/// field of the frame begun at `start`, and ends that frame. The count is patched in once the
/// items are written, so any iterator will do; more than 65,535 items, or a payload past
/// 65,535 bytes, removes the whole frame and fails.
fn put_list_and_end_frame<T>(
    out: &mut Vec<u8>,
    start: usize,
    items: impl IntoIterator<Item = T>,
    mut put_item: impl FnMut(&mut Vec<u8>, T),
) -> Result<(), FrameTooLarge> {
    let count_at = out.len();
    put_u16(out, 0);
    let mut count: usize = 0;
    for item in items {
        put_item(out, item);
        count += 1;
    }
    let Ok(count) = u16::try_from(count) else {
        out.truncate(start);
        return Err(FrameTooLarge);
    };
    out[count_at..count_at + 2].copy_from_slice(&count.to_be_bytes());
    end_frame(out, start)
}

/// Why a payload could not be decoded as a [`Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageError {
    /// The command is not defined by protocol v1 and is not application-defined.
    UnknownCommand(u16),
    /// The body is malformed.
    Body(u16, DecodeError),
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::UnknownCommand(c) => write!(f, "unknown command {c:#06x}"),
            MessageError::Body(c, e) => write!(f, "command {c:#06x}: {e}"),
        }
    }
}

impl std::error::Error for MessageError {}

/// Any protocol-v1 message, in either direction, decoded from a frame payload.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Message<'a> {
    Auth(Auth<'a>),
    GameInfo(GameInfo<'a>),
    CrossInfo(CrossInfo<'a>),
    Heartbeat(Heartbeat),
    StatusReport(StatusReport),
    AuthResult(AuthResult),
    CrossAssign(CrossAssign<'a>),
    CrossMembers(CrossMembers<'a>),
    HeartbeatAck(Heartbeat),
    StatusPush(StatusPush),
    WhitelistSnapshot(WhitelistSnapshot<'a>),
    WhitelistDelta(WhitelistDelta<'a>),
    Kick(Kick),
    /// An application-defined command (0x1000..=0x7FFF) with its raw body.
    App {
        cmd: u16,
        body: &'a [u8],
    },
}

impl<'a> Message<'a> {
    /// Decodes a frame payload (cmd + body).
    // Once per frame on the heartbeat path: inlined, the dispatch match folds into it
    // (criterion cluster/heartbeat: ~2x slower without).
    #[inline]
    pub fn decode(payload: &'a [u8]) -> Result<Self, MessageError> {
        let (c, body) = split_payload(payload);
        let e = |err| MessageError::Body(c, err);
        Ok(match c {
            cmd::AUTH => Message::Auth(Auth::decode(body).map_err(e)?),
            cmd::GAME_INFO => Message::GameInfo(GameInfo::decode(body).map_err(e)?),
            cmd::CROSS_INFO => Message::CrossInfo(CrossInfo::decode(body).map_err(e)?),
            cmd::HEARTBEAT => Message::Heartbeat(Heartbeat::decode(body).map_err(e)?),
            cmd::STATUS_REPORT => Message::StatusReport(StatusReport::decode(body).map_err(e)?),
            cmd::AUTH_RESULT => Message::AuthResult(AuthResult::decode(body).map_err(e)?),
            cmd::CROSS_ASSIGN => Message::CrossAssign(CrossAssign::decode(body).map_err(e)?),
            cmd::CROSS_MEMBERS => Message::CrossMembers(CrossMembers::decode(body).map_err(e)?),
            cmd::HEARTBEAT_ACK => Message::HeartbeatAck(Heartbeat::decode(body).map_err(e)?),
            cmd::STATUS_PUSH => Message::StatusPush(StatusPush::decode(body).map_err(e)?),
            cmd::WHITELIST_SNAPSHOT => {
                Message::WhitelistSnapshot(WhitelistSnapshot::decode(body).map_err(e)?)
            }
            cmd::WHITELIST_DELTA => {
                Message::WhitelistDelta(WhitelistDelta::decode(body).map_err(e)?)
            }
            cmd::KICK => Message::Kick(Kick::decode(body).map_err(e)?),
            c if cmd::is_app(c) => Message::App { cmd: c, body },
            c => return Err(MessageError::UnknownCommand(c)),
        })
    }

    /// Appends this message as a whole frame.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameTooLarge> {
        match self {
            Message::Auth(m) => m.encode(out)?,
            Message::GameInfo(m) => m.encode(out)?,
            Message::CrossInfo(m) => m.encode(out)?,
            Message::Heartbeat(m) => m.encode(out),
            Message::StatusReport(m) => m.encode(out),
            Message::AuthResult(m) => m.encode(out),
            Message::CrossAssign(m) => m.encode(out)?,
            Message::CrossMembers(m) => CrossMembers::encode(m.iter(), out)?,
            Message::HeartbeatAck(m) => m.encode_ack(out),
            Message::StatusPush(m) => m.encode(out),
            Message::WhitelistSnapshot(m) => {
                WhitelistSnapshot::encode_flag(m.version, m.last, m.entries.iter(), out)?
            }
            Message::WhitelistDelta(m) => m.encode(out)?,
            Message::Kick(m) => m.encode(out),
            Message::App { cmd, body } => {
                let start = begin_frame(out, *cmd);
                out.extend_from_slice(body);
                end_frame(out, start)?
            }
        }
        Ok(())
    }
}
