//! The bytes of the state files, sans-IO: one record format for the journal and the snapshot,
//! a CRC-32 per record, and a scanner that tells a torn tail (a crash mid-append: dropped)
//! from corruption in the middle (an error naming the offset).
//!
//! File = 8-byte magic, then records. Record = `body_len u32 LE`, `crc32(body) u32 LE`, body.
//! Body = `type u8` then big-endian fields as on the wire (`str` = u16 length + UTF-8).
//!
//! The state itself lives in a database now ([`super::db`]); records are what the cluster
//! produces during a loop turn (one batch per turn, in event order, handed to the store
//! thread as these bytes) and what the journal and snapshot files of earlier versions hold
//! (read once, at migration, by [`super::legacy`]).
//!
//! Every record *sets* a value (or carries the version it produces), so applying it twice
//! changes nothing.

use super::GameFacts;
use crate::proto::wire::{put_str, put_u16, put_u32, put_u64, DecodeError, Reader};
use std::fmt;

/// First bytes of a journal file.
pub const JOURNAL_MAGIC: &[u8; 8] = b"LNJRNL01";
/// First bytes of a snapshot file.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"LNSNAP01";
/// Bytes before a record's body.
pub const RECORD_HEADER: usize = 8;
/// Largest body a record may have: names arrive in frames of at most 65,535 bytes and are
/// stored whole, never cut.
pub const MAX_BODY: usize = 3 * 65_536 + 64;
/// Longest whitelist entry, in bytes.
pub const MAX_ENTRY_LEN: usize = 1024;

/// One durable fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Game node `serv` holds slot `pos` of cross node `cross`.
    Assign {
        /// serv_id.
        serv: u32,
        /// cross_server_id.
        cross: u32,
        /// cross_pos.
        pos: u16,
    },
    /// The last serv_name heard from a game node (for CROSS_MEMBERS after a restart).
    Name {
        /// serv_id.
        serv: u32,
        /// serv_name.
        name: Box<str>,
    },
    /// Whitelist entry added, producing `version`.
    WhitelistAdd {
        /// Version after the change.
        version: u32,
        /// The entry.
        entry: Box<str>,
    },
    /// Whitelist entry removed, producing `version`.
    WhitelistRemove {
        /// Version after the change.
        version: u32,
        /// The entry.
        entry: Box<str>,
    },
    /// The whitelist's version (snapshots, after their entries).
    WhitelistVersion {
        /// The version.
        version: u32,
    },
    /// A game node's maintenance flag.
    Maintenance {
        /// serv_id.
        serv: u32,
        /// In maintenance.
        on: bool,
    },
    /// An operator's capacity for a cross node (0 = no override: the node's own report).
    Capacity {
        /// cross_server_id.
        cross: u32,
        /// Capacity, 0 = cleared.
        capacity: u16,
    },
    /// A cross node's drain flag.
    Drain {
        /// cross_server_id.
        cross: u32,
        /// Draining.
        on: bool,
    },
    /// What a game node's last GAME_INFO said of itself (its platform, and what the
    /// player-facing server list shows while it is offline).
    Game {
        /// serv_id.
        serv: u32,
        /// cross_plat.
        plat: Box<str>,
        /// open_time.
        open_time: u32,
        /// The address players use.
        addr: Box<str>,
    },
    /// What a cross node's last CROSS_INFO said of itself.
    Cross {
        /// cross_server_id.
        cross: u32,
        /// cross_node_name.
        name: Box<str>,
        /// cross_plat.
        plat: Box<str>,
        /// The capacity it reported (0 = the login node's default).
        capacity: u16,
    },
    /// Everything the state holds of one game node, as a whole (what the cluster journals
    /// since the store keeps one key per game node; the three records above are the
    /// earlier files' and keys' pieces of it).
    Server(ServerRecord),
    /// Last record of a snapshot: how many came before it (a snapshot without it is corrupt).
    End {
        /// Records before this one.
        count: u64,
    },
}

/// What the state holds of one game node: each part absent until it is known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerRecord {
    /// serv_id.
    pub serv: u32,
    /// The last serv_name heard.
    pub name: Option<Box<str>>,
    /// What its last GAME_INFO said of itself.
    pub facts: Option<GameFacts>,
    /// Its slot: (cross_server_id, cross_pos).
    pub slot: Option<(u32, u16)>,
}

/// Appends a game node's whole entry as a batch record ([`Record::Server`]'s bytes, zero
/// checksum), from borrowed parts: the loop journals one per new or changed game node, and
/// building a [`ServerRecord`] first would allocate its strings only to drop them.
pub fn encode_server_in_batch(
    out: &mut Vec<u8>,
    serv: u32,
    name: Option<&str>,
    facts: Option<(&str, u32, &str)>,
    slot: Option<(u32, u16)>,
) {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER]);
    out.push(kind::SERVER);
    put_u32(out, serv);
    put_server_parts(out, name, facts, slot);
    let len = ((out.len() - start - RECORD_HEADER) as u32).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
}

/// The parts of a game node's entry (see [`ServerRecord::encode_parts`]).
fn put_server_parts(
    out: &mut Vec<u8>,
    name: Option<&str>,
    facts: Option<(&str, u32, &str)>,
    slot: Option<(u32, u16)>,
) {
    let flags = (name.is_some() as u8 * part::NAME)
        | (facts.is_some() as u8 * part::FACTS)
        | (slot.is_some() as u8 * part::SLOT);
    out.push(flags);
    if let Some(name) = name {
        put_str(out, name);
    }
    if let Some((plat, open_time, addr)) = facts {
        put_str(out, plat);
        put_u32(out, open_time);
        put_str(out, addr);
    }
    if let Some((cross, pos)) = slot {
        put_u32(out, cross);
        put_u16(out, pos);
    }
}

/// Which parts a [`ServerRecord`] carries (its flags byte).
mod part {
    pub const NAME: u8 = 1;
    pub const FACTS: u8 = 2;
    pub const SLOT: u8 = 4;
}

impl ServerRecord {
    /// Appends the parts (not `serv`): flags u8, then name str, then plat str, open_time u32
    /// and addr str, then cross_server_id u32 and cross_pos u16, each group only if present.
    /// This is also the value of the node's `server/` key.
    pub fn encode_parts(&self, out: &mut Vec<u8>) {
        let facts = self
            .facts
            .as_ref()
            .map(|f| (&*f.plat, f.open_time, &*f.addr));
        put_server_parts(out, self.name.as_deref(), facts, self.slot);
    }

    /// Checks that `parts` is what [`ServerRecord::encode_parts`] writes (every part whole,
    /// UTF-8 where it is text, nothing after), without building the record.
    pub fn check_parts(parts: &[u8]) -> Result<(), String> {
        let mut r = Reader::new(parts);
        let e = |e: DecodeError| e.to_string();
        let flags = r.u8().map_err(e)?;
        if flags & !(part::NAME | part::FACTS | part::SLOT) != 0 {
            return Err(format!("unknown parts {flags:#04x}"));
        }
        if flags & part::NAME != 0 {
            r.str().map_err(e)?;
        }
        if flags & part::FACTS != 0 {
            r.str().map_err(e)?;
            r.u32().map_err(e)?;
            r.str().map_err(e)?;
        }
        if flags & part::SLOT != 0 {
            r.u32().map_err(e)?;
            r.u16().map_err(e)?;
        }
        match r.remaining().len() {
            0 => Ok(()),
            n => Err(format!("{n} bytes after the record")),
        }
    }

    /// Reads what [`ServerRecord::encode_parts`] wrote, for game node `serv`.
    pub fn decode_parts(serv: u32, r: &mut Reader<'_>) -> Result<ServerRecord, String> {
        let e = |e: DecodeError| e.to_string();
        let flags = r.u8().map_err(e)?;
        if flags & !(part::NAME | part::FACTS | part::SLOT) != 0 {
            return Err(format!("unknown parts {flags:#04x}"));
        }
        let name = match flags & part::NAME {
            0 => None,
            _ => Some(r.str().map_err(e)?.into()),
        };
        let facts = match flags & part::FACTS {
            0 => None,
            _ => Some(GameFacts {
                plat: r.str().map_err(e)?.into(),
                open_time: r.u32().map_err(e)?,
                addr: r.str().map_err(e)?.into(),
            }),
        };
        let slot = match flags & part::SLOT {
            0 => None,
            _ => Some((r.u32().map_err(e)?, r.u16().map_err(e)?)),
        };
        Ok(ServerRecord {
            serv,
            name,
            facts,
            slot,
        })
    }
}

mod kind {
    pub const ASSIGN: u8 = 1;
    pub const NAME: u8 = 2;
    pub const WL_ADD: u8 = 3;
    pub const WL_REMOVE: u8 = 4;
    pub const WL_VERSION: u8 = 5;
    pub const MAINTENANCE: u8 = 6;
    pub const CAPACITY: u8 = 7;
    pub const DRAIN: u8 = 8;
    pub const GAME: u8 = 9;
    pub const CROSS: u8 = 10;
    pub const SERVER: u8 = 11;
    pub const END: u8 = 0xFF;
}

impl Record {
    /// Appends the whole record (header and body) to `out`, as a file holds it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        self.encode_in_batch(out);
        let crc = crc32(&out[start + RECORD_HEADER..]).to_le_bytes();
        out[start + 4..start + 8].copy_from_slice(&crc);
    }

    /// Appends the record as a batch holds it: the same bytes with a zero checksum. A batch
    /// goes from the loop to the store thread in memory, where nothing can tear or flip it,
    /// so the loop does not pay the checksum (a byte-wise CRC per record on every handshake);
    /// [`decode_batch`] does not read it.
    pub fn encode_in_batch(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; RECORD_HEADER]);
        match self {
            Record::Assign { serv, cross, pos } => {
                out.push(kind::ASSIGN);
                put_u32(out, *serv);
                put_u32(out, *cross);
                put_u16(out, *pos);
            }
            Record::Name { serv, name } => {
                out.push(kind::NAME);
                put_u32(out, *serv);
                put_str(out, name);
            }
            Record::WhitelistAdd { version, entry }
            | Record::WhitelistRemove { version, entry } => {
                out.push(if matches!(self, Record::WhitelistAdd { .. }) {
                    kind::WL_ADD
                } else {
                    kind::WL_REMOVE
                });
                put_u32(out, *version);
                put_str(out, entry);
            }
            Record::WhitelistVersion { version } => {
                out.push(kind::WL_VERSION);
                put_u32(out, *version);
            }
            Record::Maintenance { serv, on } => {
                out.push(kind::MAINTENANCE);
                put_u32(out, *serv);
                out.push(*on as u8);
            }
            Record::Capacity { cross, capacity } => {
                out.push(kind::CAPACITY);
                put_u32(out, *cross);
                put_u16(out, *capacity);
            }
            Record::Drain { cross, on } => {
                out.push(kind::DRAIN);
                put_u32(out, *cross);
                out.push(*on as u8);
            }
            Record::Game {
                serv,
                plat,
                open_time,
                addr,
            } => {
                out.push(kind::GAME);
                put_u32(out, *serv);
                put_str(out, plat);
                put_u32(out, *open_time);
                put_str(out, addr);
            }
            Record::Cross {
                cross,
                name,
                plat,
                capacity,
            } => {
                out.push(kind::CROSS);
                put_u32(out, *cross);
                put_str(out, name);
                put_str(out, plat);
                put_u16(out, *capacity);
            }
            Record::Server(s) => {
                out.push(kind::SERVER);
                put_u32(out, s.serv);
                s.encode_parts(out);
            }
            Record::End { count } => {
                out.push(kind::END);
                put_u64(out, *count);
            }
        }
        let len = ((out.len() - start - RECORD_HEADER) as u32).to_le_bytes();
        out[start..start + 4].copy_from_slice(&len);
    }

    /// Decodes one body (after its CRC was checked).
    pub fn decode(body: &[u8]) -> Result<Record, String> {
        let mut r = Reader::new(body);
        let e = |e: DecodeError| e.to_string();
        let bool_of = |v: u8| match v {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(format!("flag {v} is neither 0 nor 1")),
        };
        let rec = match r.u8().map_err(e)? {
            kind::ASSIGN => Record::Assign {
                serv: r.u32().map_err(e)?,
                cross: r.u32().map_err(e)?,
                pos: r.u16().map_err(e)?,
            },
            kind::NAME => Record::Name {
                serv: r.u32().map_err(e)?,
                name: r.str().map_err(e)?.into(),
            },
            kind::WL_ADD => Record::WhitelistAdd {
                version: r.u32().map_err(e)?,
                entry: r.str().map_err(e)?.into(),
            },
            kind::WL_REMOVE => Record::WhitelistRemove {
                version: r.u32().map_err(e)?,
                entry: r.str().map_err(e)?.into(),
            },
            kind::WL_VERSION => Record::WhitelistVersion {
                version: r.u32().map_err(e)?,
            },
            kind::MAINTENANCE => Record::Maintenance {
                serv: r.u32().map_err(e)?,
                on: bool_of(r.u8().map_err(e)?)?,
            },
            kind::CAPACITY => Record::Capacity {
                cross: r.u32().map_err(e)?,
                capacity: r.u16().map_err(e)?,
            },
            kind::DRAIN => Record::Drain {
                cross: r.u32().map_err(e)?,
                on: bool_of(r.u8().map_err(e)?)?,
            },
            kind::GAME => Record::Game {
                serv: r.u32().map_err(e)?,
                plat: r.str().map_err(e)?.into(),
                open_time: r.u32().map_err(e)?,
                addr: r.str().map_err(e)?.into(),
            },
            kind::CROSS => Record::Cross {
                cross: r.u32().map_err(e)?,
                name: r.str().map_err(e)?.into(),
                plat: r.str().map_err(e)?.into(),
                capacity: r.u16().map_err(e)?,
            },
            kind::SERVER => {
                let serv = r.u32().map_err(e)?;
                Record::Server(ServerRecord::decode_parts(serv, &mut r)?)
            }
            kind::END => Record::End {
                count: r.u64().map_err(e)?,
            },
            k => return Err(format!("unknown record type {k}")),
        };
        if !r.remaining().is_empty() {
            return Err(format!("{} bytes after the record", r.remaining().len()));
        }
        Ok(rec)
    }
}

/// A file that cannot be trusted: the node refuses to start rather than forget state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt {
    /// Byte offset of the bad record (or header).
    pub offset: u64,
    /// What is wrong there.
    pub why: String,
}

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "corrupt at offset {}: {}", self.offset, self.why)
    }
}

/// What a scan of a whole file found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The good records, in order.
    pub records: Vec<Record>,
    /// Bytes up to the end of the last good record (where appends continue).
    pub valid_len: u64,
    /// A torn last record was dropped: its offset.
    pub torn_at: Option<u64>,
}

/// Reads every record of a file's bytes, after its `magic`. An incomplete last record, or one
/// whose bytes are all zero from its start to the end of the file, is torn (dropped); a bad
/// record with more data after it is corruption.
pub fn scan(bytes: &[u8], magic: &[u8; 8]) -> Result<Scan, Corrupt> {
    if bytes.len() < magic.len() {
        if magic.starts_with(bytes) {
            // Crashed while writing the magic of a new file: nothing in it.
            return Ok(Scan {
                torn_at: (!bytes.is_empty()).then_some(0),
                ..Scan::default()
            });
        }
        return Err(Corrupt {
            offset: 0,
            why: "not a login-node state file (bad magic)".into(),
        });
    }
    if &bytes[..8] != magic {
        return Err(Corrupt {
            offset: 0,
            why: "not a login-node state file (bad magic)".into(),
        });
    }
    let mut scan = Scan {
        valid_len: 8,
        ..Scan::default()
    };
    let mut at = 8usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let torn = || rest.iter().all(|&b| b == 0);
        if rest.len() < RECORD_HEADER {
            scan.torn_at = Some(at as u64);
            break;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len == 0 || len > MAX_BODY {
            if torn() {
                scan.torn_at = Some(at as u64);
                break;
            }
            return Err(Corrupt {
                offset: at as u64,
                why: format!("record length {len} is out of range"),
            });
        }
        if rest.len() < RECORD_HEADER + len {
            scan.torn_at = Some(at as u64);
            break;
        }
        let body = &rest[RECORD_HEADER..RECORD_HEADER + len];
        let end = at + RECORD_HEADER + len;
        if crc32(body) != crc {
            if end == bytes.len() || torn() {
                // The last record of the file: a write that did not finish.
                scan.torn_at = Some(at as u64);
                break;
            }
            return Err(Corrupt {
                offset: at as u64,
                why: "checksum mismatch".into(),
            });
        }
        let record = Record::decode(body).map_err(|why| Corrupt {
            offset: at as u64,
            why,
        })?;
        scan.records.push(record);
        at = end;
        scan.valid_len = at as u64;
    }
    Ok(scan)
}

/// A batch's record bodies, in order, without decoding them; an error names the offset of a
/// truncated record.
pub fn batch_bodies(bytes: &[u8]) -> impl Iterator<Item = Result<&[u8], Corrupt>> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at >= bytes.len() {
            return None;
        }
        let offset = at as u64;
        let bad = |why: &str| Corrupt {
            offset,
            why: why.into(),
        };
        let rest = &bytes[at..];
        let Some(header) = rest.first_chunk::<RECORD_HEADER>() else {
            at = bytes.len();
            return Some(Err(bad("truncated record header")));
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        match rest.get(RECORD_HEADER..RECORD_HEADER + len) {
            Some(body) => {
                at += RECORD_HEADER + len;
                Some(Ok(body))
            }
            None => {
                let err = bad("truncated record body");
                at = bytes.len();
                Some(Err(err))
            }
        }
    })
}

/// The game node and the `server/` value of a [`Record::Server`] body (its bytes after the
/// kind and `serv` are the value, as they are), or `None` for a body of another kind.
pub fn server_body(body: &[u8]) -> Option<Result<(u32, &[u8]), String>> {
    let (&kind, rest) = body.split_first()?;
    if kind != kind::SERVER {
        return None;
    }
    let Some((serv, parts)) = rest.split_first_chunk::<4>() else {
        return Some(Err("body truncated".into()));
    };
    Some(ServerRecord::check_parts(parts).map(|()| (u32::from_be_bytes(*serv), parts)))
}

/// Decodes a batch: records as [`Record::encode`] wrote them, with no magic (the bytes the
/// cluster hands the store thread). An error names the offset of the first bad record.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Record>, Corrupt> {
    let mut records = Vec::new();
    let mut at = 0u64;
    for body in batch_bodies(bytes) {
        let body = body?;
        records.push(Record::decode(body).map_err(|why| Corrupt { offset: at, why })?);
        at += (RECORD_HEADER + body.len()) as u64;
    }
    Ok(records)
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 (IEEE 802.3, as in zlib and gzip).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c = CRC_TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_kinds() -> Vec<Record> {
        vec![
            Record::Assign {
                serv: 7,
                cross: 9001,
                pos: 3,
            },
            Record::Name {
                serv: 7,
                name: "s7 名".into(),
            },
            Record::WhitelistAdd {
                version: 1,
                entry: "acc-1".into(),
            },
            Record::WhitelistRemove {
                version: 2,
                entry: "acc-1".into(),
            },
            Record::WhitelistVersion { version: 2 },
            Record::Maintenance { serv: 7, on: true },
            Record::Capacity {
                cross: 9001,
                capacity: 50,
            },
            Record::Drain {
                cross: 9001,
                on: true,
            },
            Record::Game {
                serv: 7,
                plat: "asia".into(),
                open_time: 1_700_000_000,
                addr: "10.0.0.5:8001".into(),
            },
            Record::Cross {
                cross: 9001,
                name: "cross1@10.0.0.7".into(),
                plat: "asia".into(),
                capacity: 0,
            },
            Record::Server(ServerRecord {
                serv: 7,
                name: Some("s7".into()),
                facts: Some(GameFacts {
                    plat: "asia".into(),
                    open_time: 1_700_000_000,
                    addr: "10.0.0.5:8001".into(),
                }),
                slot: Some((9001, 3)),
            }),
            Record::Server(ServerRecord {
                serv: 8,
                slot: Some((9001, 4)),
                ..Default::default()
            }),
            Record::Server(ServerRecord {
                serv: 9,
                ..Default::default()
            }),
            Record::End { count: 13 },
        ]
    }

    fn file(records: &[Record]) -> Vec<u8> {
        let mut out = JOURNAL_MAGIC.to_vec();
        for r in records {
            r.encode(&mut out);
        }
        out
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn every_record_round_trips() {
        let records = all_kinds();
        let bytes = file(&records);
        let scan = scan(&bytes, JOURNAL_MAGIC).expect("scan");
        assert_eq!(scan.records, records);
        assert_eq!(scan.valid_len, bytes.len() as u64);
        assert_eq!(scan.torn_at, None);
    }

    #[test]
    fn every_truncation_is_a_torn_tail_never_an_error() {
        let records = all_kinds();
        let bytes = file(&records);
        for cut in 0..bytes.len() {
            let scan = scan(&bytes[..cut], JOURNAL_MAGIC).expect("a prefix is never corrupt");
            // Only whole records survive, in order.
            assert_eq!(scan.records[..], records[..scan.records.len()]);
            assert!(scan.valid_len <= cut as u64);
        }
    }

    #[test]
    fn zeroed_tail_is_torn() {
        let mut bytes = file(&all_kinds()[..2]);
        let good = bytes.len() as u64;
        bytes.extend_from_slice(&[0; 100]);
        let scan = scan(&bytes, JOURNAL_MAGIC).expect("scan");
        assert_eq!(scan.records.len(), 2);
        assert_eq!(scan.torn_at, Some(good));
        assert_eq!(scan.valid_len, good);
    }

    #[test]
    fn a_flipped_bit_in_the_middle_is_corruption_with_its_offset() {
        let records = all_kinds();
        let bytes = file(&records);
        let mut second = JOURNAL_MAGIC.to_vec();
        records[0].encode(&mut second);
        let second_at = second.len();
        let mut bad = bytes.clone();
        bad[second_at + RECORD_HEADER + 2] ^= 0x10;
        let err = scan(&bad, JOURNAL_MAGIC).expect_err("corrupt");
        assert_eq!(err.offset, second_at as u64);
        assert!(err.why.contains("checksum"), "{err}");
    }

    #[test]
    fn a_flipped_bit_in_the_last_record_is_a_torn_tail() {
        let mut bytes = file(&all_kinds());
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        let scan = scan(&bytes, JOURNAL_MAGIC).expect("torn, not corrupt");
        assert_eq!(scan.records.len(), all_kinds().len() - 1);
        assert!(scan.torn_at.is_some());
    }

    #[test]
    fn bad_magic_and_absurd_lengths_are_errors() {
        assert!(scan(b"NOTMAGIC", JOURNAL_MAGIC).is_err());
        assert!(scan(b"NOT", JOURNAL_MAGIC).is_err());
        assert!(scan(b"LNJ", JOURNAL_MAGIC).is_ok());
        let mut bytes = file(&all_kinds()[..1]);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[1; 20]);
        let err = scan(&bytes, JOURNAL_MAGIC).expect_err("corrupt");
        assert!(err.why.contains("length"), "{err}");
    }

    #[test]
    fn garbage_never_panics() {
        // A deterministic pseudo-random walk over garbage after a valid magic.
        let mut x = 0x1234_5678u32;
        for len in 0..400 {
            let mut bytes = JOURNAL_MAGIC.to_vec();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                bytes.push(x as u8);
            }
            let _ = scan(&bytes, JOURNAL_MAGIC);
        }
        assert_eq!(Record::decode(&[]), Err("body truncated".into()));
        assert!(Record::decode(&[kind::MAINTENANCE, 0, 0, 0, 1, 2]).is_err());
        let unknown_part = Record::decode(&[kind::SERVER, 0, 0, 0, 1, 8]);
        assert_eq!(unknown_part, Err("unknown parts 0x08".into()));
        assert!(Record::decode(&[kind::SERVER, 0, 0, 0, 1, 4, 0, 0]).is_err());
    }

    #[test]
    fn batches_decode_in_order_and_long_names_stay_whole() {
        let mut records = all_kinds();
        records.push(Record::Name {
            serv: 8,
            name: "n".repeat(5000).into(),
        });
        let mut bytes = Vec::new();
        records.iter().for_each(|r| r.encode_in_batch(&mut bytes));
        assert_eq!(decode_batch(&bytes).expect("decodes"), records);
        // The borrowed encoder writes what the record does.
        let mut borrowed = Vec::new();
        encode_server_in_batch(
            &mut borrowed,
            7,
            Some("s7"),
            Some(("asia", 1_700_000_000, "10.0.0.5:8001")),
            Some((9001, 3)),
        );
        let mut owned = Vec::new();
        records[10].encode_in_batch(&mut owned);
        assert_eq!(borrowed, owned);
        // The same bytes as a file's but the checksums.
        let mut sealed = Vec::new();
        records.iter().for_each(|r| r.encode(&mut sealed));
        assert_eq!(decode_batch(&sealed).expect("decodes"), records);
        assert_eq!(sealed.len(), bytes.len());
        for cut in [1, 9, bytes.len() - 1] {
            assert!(decode_batch(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
