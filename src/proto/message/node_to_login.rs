//! The messages a node sends to the login node (0x0001..=0x0005). HEARTBEAT's body is also
//! HEARTBEAT_ACK's, so [`Heartbeat`] encodes both.

use super::{cmd, put_list_and_end_frame};
use crate::proto::frame::{begin_frame, end_frame, put_fixed_frame, FrameTooLarge};
use crate::proto::wire::{put_str, put_u16, put_u32, DecodeError, Reader};
use std::fmt;

/// 0x0001 AUTH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth<'a> {
    /// Raw node type (1 game, 2 cross; others are answered with code 6).
    pub node_type: u8,
    /// Node id.
    pub node_id: u32,
    /// The node's own platform/channel name.
    pub plat: &'a str,
    /// Unix seconds when signed.
    pub time: u32,
    /// md5(decimal(node_id) ++ decimal(time) ++ token).
    pub sign: [u8; 16],
}

impl<'a> Auth<'a> {
    /// Decodes an AUTH body.
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        Ok(Auth {
            node_type: r.u8()?,
            node_id: r.u32()?,
            plat: r.str()?,
            time: r.u32()?,
            sign: r.md5()?,
        })
    }

    /// Appends the whole frame.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameTooLarge> {
        let start = begin_frame(out, cmd::AUTH);
        out.push(self.node_type);
        put_u32(out, self.node_id);
        put_str(out, self.plat);
        put_u32(out, self.time);
        out.extend_from_slice(&self.sign);
        end_frame(out, start)
    }
}

/// 0x0002 GAME_INFO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GameInfo<'a> {
    /// Must equal node_id.
    pub serv_id: u32,
    /// Display name.
    pub serv_name: &'a str,
    /// Unix seconds the game server opened.
    pub open_time: u32,
    /// The cross platform it belongs to.
    pub cross_plat: &'a str,
    /// Its current cross assignment, 0 = none.
    pub cross_server_id: u32,
    /// Its slot in that cross node, 0 = none.
    pub cross_pos: u16,
    /// The address players use to reach it.
    pub addr: &'a str,
}

impl<'a> GameInfo<'a> {
    /// Decodes a GAME_INFO body.
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        Ok(GameInfo {
            serv_id: r.u32()?,
            serv_name: r.str()?,
            open_time: r.u32()?,
            cross_plat: r.str()?,
            cross_server_id: r.u32()?,
            cross_pos: r.u16()?,
            addr: r.str()?,
        })
    }

    /// Appends the whole frame.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameTooLarge> {
        let start = begin_frame(out, cmd::GAME_INFO);
        put_u32(out, self.serv_id);
        put_str(out, self.serv_name);
        put_u32(out, self.open_time);
        put_str(out, self.cross_plat);
        put_u32(out, self.cross_server_id);
        put_u16(out, self.cross_pos);
        put_str(out, self.addr);
        end_frame(out, start)
    }
}

/// A `list<u32>` borrowed from a body.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct U32List<'a> {
    raw: &'a [u8],
}

impl U32List<'static> {
    /// The empty list (for building a [`CrossInfo`] to encode with [`CrossInfo::encode_with`]).
    pub const EMPTY: U32List<'static> = U32List { raw: &[] };
}

impl<'a> U32List<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.raw.len() / 4
    }

    /// True when the list has no elements.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The elements in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        self.raw
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

impl fmt::Debug for U32List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// 0x0003 CROSS_INFO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossInfo<'a> {
    /// Must equal node_id.
    pub id: u32,
    /// Its cross platform.
    pub cross_plat: &'a str,
    /// The id game nodes store in their cross_server_id.
    pub cross_server_id: u32,
    /// What game nodes use to reach it.
    pub cross_node_name: &'a str,
    /// Most game nodes it serves; 0 = the login node's default.
    pub capacity: u16,
    /// serv_ids it currently serves.
    pub game_server_list: U32List<'a>,
}

impl<'a> CrossInfo<'a> {
    /// Decodes a CROSS_INFO body.
    pub fn decode(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let id = r.u32()?;
        let cross_plat = r.str()?;
        let cross_server_id = r.u32()?;
        let cross_node_name = r.str()?;
        let capacity = r.u16()?;
        let count = r.list_header(4)? as usize;
        let raw = r.bytes(count * 4)?;
        Ok(CrossInfo {
            id,
            cross_plat,
            cross_server_id,
            cross_node_name,
            capacity,
            game_server_list: U32List { raw },
        })
    }

    /// Appends the whole frame with `game_server_list` taken from `servers`.
    pub fn encode_with(&self, servers: &[u32], out: &mut Vec<u8>) -> Result<(), FrameTooLarge> {
        let start = begin_frame(out, cmd::CROSS_INFO);
        put_u32(out, self.id);
        put_str(out, self.cross_plat);
        put_u32(out, self.cross_server_id);
        put_str(out, self.cross_node_name);
        put_u16(out, self.capacity);
        put_list_and_end_frame(out, start, servers, |out, s| put_u32(out, *s))
    }

    /// Appends the whole frame, re-encoding the borrowed list.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameTooLarge> {
        let servers: Vec<u32> = self.game_server_list.iter().collect();
        self.encode_with(&servers, out)
    }
}

/// 0x0004 HEARTBEAT and 0x8004 HEARTBEAT_ACK share this body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Opaque to the login node; echoed unchanged.
    pub ts: u64,
}

impl Heartbeat {
    /// Decodes a HEARTBEAT or HEARTBEAT_ACK body.
    #[inline]
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        Ok(Heartbeat {
            ts: Reader::new(body).u64()?,
        })
    }

    /// Appends a HEARTBEAT frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_fixed_frame(out, cmd::HEARTBEAT, self.ts.to_be_bytes());
    }

    /// Appends a HEARTBEAT_ACK frame echoing this `ts`.
    #[inline]
    pub fn encode_ack(&self, out: &mut Vec<u8>) {
        put_fixed_frame(out, cmd::HEARTBEAT_ACK, self.ts.to_be_bytes());
    }
}

/// 0x0005 STATUS_REPORT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusReport {
    /// Players online now.
    pub online: u32,
}

impl StatusReport {
    /// Decodes a STATUS_REPORT body.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        Ok(StatusReport {
            online: Reader::new(body).u32()?,
        })
    }

    /// Appends the whole frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_fixed_frame(out, cmd::STATUS_REPORT, self.online.to_be_bytes());
    }
}
