//! The independent test vectors, from the repository's copy `tests/vectors/protocol-v1.json`
//! (`.ci/run` checks it byte-identical to the reference in the shared folder, `vectors/protocol-v1.json`
//! whenever that exists, so a clone with nothing beside it still runs these).

use login_node::proto::{self, auth, Message};
use serde_json::{json, Value};

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/protocol-v1.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("vectors are JSON")
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A decoded message in the vectors' field notation.
fn fields_of(m: &Message<'_>) -> Value {
    match m {
        Message::Auth(a) => {
            json!({"node_type": a.node_type, "node_id": a.node_id, "plat": a.plat, "time": a.time, "sign": hex(&a.sign)})
        }
        Message::GameInfo(g) => {
            json!({"serv_id": g.serv_id, "serv_name": g.serv_name, "open_time": g.open_time,
            "cross_plat": g.cross_plat, "cross_server_id": g.cross_server_id, "cross_pos": g.cross_pos, "addr": g.addr})
        }
        Message::CrossInfo(c) => {
            json!({"id": c.id, "cross_plat": c.cross_plat, "cross_server_id": c.cross_server_id,
            "cross_node_name": c.cross_node_name, "capacity": c.capacity, "game_server_list": c.game_server_list.iter().collect::<Vec<_>>()})
        }
        Message::Heartbeat(h) | Message::HeartbeatAck(h) => json!({"ts": h.ts}),
        Message::StatusReport(s) => json!({"online": s.online}),
        Message::AuthResult(r) => json!({"code": r.code, "server_time": r.server_time,
            "heartbeat_interval": r.heartbeat_interval, "heartbeat_timeout": r.heartbeat_timeout}),
        Message::CrossAssign(a) => {
            json!({"cross_server_id": a.cross_server_id, "cross_node_name": a.cross_node_name,
            "cross_plat": a.cross_plat, "cross_pos": a.cross_pos})
        }
        Message::CrossMembers(m) => {
            json!({"members": m.iter().map(|m| json!({"serv_id": m.serv_id, "serv_name": m.serv_name, "cross_pos": m.cross_pos})).collect::<Vec<_>>()})
        }
        Message::StatusPush(s) => json!({"maintenance": s.maintenance}),
        Message::WhitelistSnapshot(s) => {
            json!({"version": s.version, "last": s.last, "entries": s.entries.iter().collect::<Vec<_>>()})
        }
        Message::WhitelistDelta(d) => json!({"version": d.version, "op": d.op, "entry": d.entry}),
        Message::Kick(k) => json!({"reason": k.reason}),
        Message::App { cmd, body } => json!({"cmd": cmd, "body": hex(body)}),
    }
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("field {k}"))
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("field {k}"))
}

/// Encodes a message from the vectors' fields.
fn encode(cmd: u16, f: &Value) -> Vec<u8> {
    use login_node::proto::*;
    let mut out = Vec::new();
    match cmd {
        cmd::AUTH => {
            let sign: [u8; 16] = unhex(s(f, "sign")).try_into().expect("16 bytes");
            Auth {
                node_type: u(f, "node_type") as u8,
                node_id: u(f, "node_id") as u32,
                plat: s(f, "plat"),
                time: u(f, "time") as u32,
                sign,
            }
            .encode(&mut out)
            .expect("fits")
        }
        cmd::AUTH_RESULT => AuthResult {
            code: u(f, "code") as u8,
            server_time: u(f, "server_time") as u32,
            heartbeat_interval: u(f, "heartbeat_interval") as u16,
            heartbeat_timeout: u(f, "heartbeat_timeout") as u16,
        }
        .encode(&mut out),
        cmd::GAME_INFO => GameInfo {
            serv_id: u(f, "serv_id") as u32,
            serv_name: s(f, "serv_name"),
            open_time: u(f, "open_time") as u32,
            cross_plat: s(f, "cross_plat"),
            cross_server_id: u(f, "cross_server_id") as u32,
            cross_pos: u(f, "cross_pos") as u16,
            addr: s(f, "addr"),
        }
        .encode(&mut out)
        .expect("fits"),
        cmd::CROSS_INFO => {
            let list: Vec<u32> = f["game_server_list"]
                .as_array()
                .expect("list")
                .iter()
                .map(|v| v.as_u64().expect("u32") as u32)
                .collect();
            CrossInfo {
                id: u(f, "id") as u32,
                cross_plat: s(f, "cross_plat"),
                cross_server_id: u(f, "cross_server_id") as u32,
                cross_node_name: s(f, "cross_node_name"),
                capacity: u(f, "capacity") as u16,
                game_server_list: U32List::EMPTY,
            }
            .encode_with(&list, &mut out)
            .expect("fits");
        }
        cmd::HEARTBEAT => Heartbeat { ts: u(f, "ts") }.encode(&mut out),
        cmd::HEARTBEAT_ACK => Heartbeat { ts: u(f, "ts") }.encode_ack(&mut out),
        cmd::STATUS_REPORT => StatusReport {
            online: u(f, "online") as u32,
        }
        .encode(&mut out),
        cmd::CROSS_ASSIGN => CrossAssign {
            cross_server_id: u(f, "cross_server_id") as u32,
            cross_node_name: s(f, "cross_node_name"),
            cross_plat: s(f, "cross_plat"),
            cross_pos: u(f, "cross_pos") as u16,
        }
        .encode(&mut out)
        .expect("fits"),
        cmd::CROSS_MEMBERS => {
            let members = f["members"].as_array().expect("members");
            CrossMembers::encode(
                members.iter().map(|m| Member {
                    serv_id: u(m, "serv_id") as u32,
                    serv_name: s(m, "serv_name"),
                    cross_pos: u(m, "cross_pos") as u16,
                }),
                &mut out,
            )
            .expect("fits")
        }
        cmd::STATUS_PUSH => StatusPush {
            maintenance: u(f, "maintenance") as u8,
        }
        .encode(&mut out),
        cmd::WHITELIST_SNAPSHOT => {
            let entries = f["entries"].as_array().expect("entries");
            WhitelistSnapshot::encode(
                u(f, "version") as u32,
                u(f, "last") == 1,
                entries.iter().map(|e| e.as_str().expect("str")),
                &mut out,
            )
            .expect("fits")
        }
        cmd::WHITELIST_DELTA => WhitelistDelta {
            version: u(f, "version") as u32,
            op: u(f, "op") as u8,
            entry: s(f, "entry"),
        }
        .encode(&mut out)
        .expect("fits"),
        cmd::KICK => Kick {
            reason: u(f, "reason") as u8,
        }
        .encode(&mut out),
        other => panic!("no encoder for {other:#06x}"),
    }
    out
}

fn frames() -> Vec<(String, u16, Value, Vec<u8>)> {
    vectors()["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| {
            (
                s(f, "name").to_string(),
                u(f, "cmd") as u16,
                f["fields"].clone(),
                unhex(s(f, "frame_hex")),
            )
        })
        .collect()
}

#[test]
fn signatures_match() {
    let v = vectors();
    let sigs = v["signatures"].as_array().expect("signatures");
    assert!(!sigs.is_empty());
    for sig in sigs {
        let got = auth::sign(
            u(sig, "node_id") as u32,
            u(sig, "time") as u32,
            s(sig, "token").as_bytes(),
        );
        assert_eq!(
            hex(&got),
            s(sig, "md5_hex"),
            "signature for {}",
            s(sig, "signed_text")
        );
    }
}

#[test]
fn every_frame_decodes_to_its_fields() {
    let all = frames();
    assert!(all.len() >= 19);
    for (name, cmd, fields, bytes) in all {
        let (payload, used) = proto::parse_frame(&bytes, proto::MAX_PAYLOAD)
            .expect("valid header")
            .expect("whole frame");
        assert_eq!(used, bytes.len(), "{name}: one frame");
        assert_eq!(proto::split_payload(payload).0, cmd, "{name}: cmd");
        let msg = Message::decode(payload).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(fields_of(&msg), fields, "{name}");
    }
}

#[test]
fn every_frame_encodes_to_its_bytes() {
    for (name, cmd, fields, bytes) in frames() {
        if name.contains("trailing") {
            // Trailing bytes are ignored on decode; an encoder never produces them.
            continue;
        }
        assert_eq!(hex(&encode(cmd, &fields)), hex(&bytes), "{name}");
    }
}

/// Feeds `chunks` to an incremental parser (buffer + parse_frame, as the reactor and client
/// do) and returns the payloads of the frames it completes.
fn parse_incrementally(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some((payload, used)) =
            proto::parse_frame(&buf, proto::MAX_PAYLOAD).expect("valid")
        {
            out.push(payload.to_vec());
            buf.drain(..used);
        }
    }
    assert!(buf.is_empty(), "bytes left over");
    out
}

#[test]
fn every_frame_split_at_every_byte_boundary() {
    for (name, _, _, bytes) in frames() {
        let whole = bytes[2..].to_vec();
        for at in 0..=bytes.len() {
            let got = parse_incrementally(&[&bytes[..at], &bytes[at..]]);
            assert_eq!(got, std::slice::from_ref(&whole), "{name} split at {at}");
        }
        // And one byte at a time.
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(
            parse_incrementally(&singles),
            [whole],
            "{name} byte by byte"
        );
    }
}

#[test]
fn many_frames_in_one_buffer() {
    let all = frames();
    let mut stream = Vec::new();
    for (_, _, _, bytes) in &all {
        stream.extend_from_slice(bytes);
    }
    let expected: Vec<Vec<u8>> = all.iter().map(|(_, _, _, b)| b[2..].to_vec()).collect();
    assert_eq!(parse_incrementally(&[&stream]), expected);
    for size in [3usize, 7, 64] {
        let chunks: Vec<&[u8]> = stream.chunks(size).collect();
        assert_eq!(parse_incrementally(&chunks), expected, "chunks of {size}");
    }
}

#[test]
fn malformed_inputs_are_rejected() {
    let v = vectors();
    let bad = v["malformed"].as_array().expect("malformed");
    assert!(!bad.is_empty());
    for m in bad {
        let name = s(m, "name");
        let bytes = unhex(s(m, "bytes_hex"));
        // Every prefix too: an error or "need more", never a panic.
        for end in 0..bytes.len() {
            let _ = proto::parse_frame(&bytes[..end], proto::MAX_PAYLOAD)
                .map(|f| f.map(|(p, _)| Message::decode(p)));
        }
        let rejected = match proto::parse_frame(&bytes, proto::MAX_PAYLOAD) {
            Err(_) => true,
            Ok(None) => panic!("{name}: parser waits for bytes instead of rejecting"),
            Ok(Some((payload, _))) => Message::decode(payload).is_err(),
        };
        assert!(rejected, "{name}: {} was accepted", s(m, "why"));
    }
}
