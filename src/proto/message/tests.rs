//! Round trips, malformed input and snapshot splitting of [`super::Message`].

use super::*;

fn round_trip(m: Message<'_>) {
    let mut out = Vec::new();
    m.encode(&mut out).expect("encodes");
    let (payload, used) = crate::proto::frame::parse_frame(&out, 65535)
        .expect("valid")
        .expect("whole");
    assert_eq!(used, out.len());
    assert_eq!(Message::decode(payload).expect("decodes"), m);
}

#[test]
fn every_message_round_trips() {
    round_trip(Message::Auth(Auth {
        node_type: 1,
        node_id: 5,
        plat: "p",
        time: 9,
        sign: [7; 16],
    }));
    round_trip(Message::Heartbeat(Heartbeat { ts: u64::MAX }));
    round_trip(Message::HeartbeatAck(Heartbeat { ts: 1 }));
    round_trip(Message::StatusReport(StatusReport { online: 3 }));
    round_trip(Message::AuthResult(AuthResult {
        code: 5,
        server_time: 1,
        heartbeat_interval: 2,
        heartbeat_timeout: 3,
    }));
    round_trip(Message::CrossAssign(CrossAssign {
        cross_server_id: 1,
        cross_node_name: "n",
        cross_plat: "p",
        cross_pos: 2,
    }));
    round_trip(Message::StatusPush(StatusPush { maintenance: 1 }));
    round_trip(Message::WhitelistDelta(WhitelistDelta {
        version: 2,
        op: 2,
        entry: "x",
    }));
    round_trip(Message::Kick(Kick { reason: 4 }));
    round_trip(Message::App {
        cmd: 0x1234,
        body: b"abc",
    });
    let mut out = Vec::new();
    CrossMembers::encode(
        [Member {
            serv_id: 1,
            serv_name: "a",
            cross_pos: 1,
        }],
        &mut out,
    )
    .expect("fits");
    let m = CrossMembers::decode(&out[4..]).expect("decodes");
    round_trip(Message::CrossMembers(m));
    let mut out = Vec::new();
    WhitelistSnapshot::encode(4, true, ["a", "bc"], &mut out).expect("fits");
    let m = WhitelistSnapshot::decode(&out[4..]).expect("decodes");
    assert_eq!(m.entries.iter().collect::<Vec<_>>(), ["a", "bc"]);
    round_trip(Message::WhitelistSnapshot(m));
}

#[test]
fn unknown_and_malformed_are_errors() {
    assert_eq!(
        Message::decode(&[0x00, 0x09]),
        Err(MessageError::UnknownCommand(9))
    );
    assert_eq!(
        Message::decode(&[0x90, 0x00]),
        Err(MessageError::UnknownCommand(0x9000))
    );
    assert_eq!(
        Message::decode(&[0x00, 0x04, 1]),
        Err(MessageError::Body(4, DecodeError::Truncated))
    );
    // A member list claiming 2 members with bytes for one.
    let mut out = Vec::new();
    CrossMembers::encode(
        [Member {
            serv_id: 1,
            serv_name: "",
            cross_pos: 1,
        }],
        &mut out,
    )
    .expect("fits");
    out[5] = 2;
    assert!(CrossMembers::decode(&out[4..]).is_err());
}

#[test]
fn cross_members_too_large_is_refused_not_corrupted() {
    let name = "x".repeat(1000);
    let members = (0..100).map(|i| Member {
        serv_id: i,
        serv_name: &name,
        cross_pos: i as u16,
    });
    let mut out = vec![1, 2, 3];
    assert_eq!(CrossMembers::encode(members, &mut out), Err(FrameTooLarge));
    assert_eq!(out, [1, 2, 3]);
}

#[test]
fn cross_info_with_too_many_servers_is_refused_not_corrupted() {
    let info = CrossInfo {
        id: 1,
        cross_plat: "p",
        cross_server_id: 1,
        cross_node_name: "c",
        capacity: 0,
        game_server_list: U32List::EMPTY,
    };
    let servers: Vec<u32> = (0..20_000).collect();
    let mut out = vec![1, 2, 3];
    assert_eq!(info.encode_with(&servers, &mut out), Err(FrameTooLarge));
    assert_eq!(out, [1, 2, 3]);
    assert_eq!(info.encode_with(&servers[..3], &mut out), Ok(()));
    let (payload, _) = crate::proto::parse_frame(&out[3..], 65_535)
        .expect("valid")
        .expect("whole");
    let Message::CrossInfo(back) = Message::decode(payload).expect("decodes") else {
        panic!("not a CROSS_INFO");
    };
    assert_eq!(back.game_server_list.iter().collect::<Vec<_>>(), [0, 1, 2]);
}

mod snapshot_split_tests {
    use super::*;
    use crate::proto::parse_frame;

    fn frames(bytes: &[u8]) -> Vec<(u32, u8, Vec<String>)> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < bytes.len() {
            let (payload, used) = parse_frame(&bytes[at..], 65_535)
                .expect("valid")
                .expect("whole");
            let Message::WhitelistSnapshot(s) = Message::decode(payload).expect("decode") else {
                panic!("not a snapshot");
            };
            out.push((
                s.version,
                s.last,
                s.entries.iter().map(str::to_string).collect(),
            ));
            at += used;
        }
        out
    }

    #[test]
    fn trailing_bytes_after_a_list_do_not_change_its_value() {
        // Found by the `messages` fuzz target: the lists kept the trailing bytes.
        let mut plain = Vec::new();
        WhitelistSnapshot::encode(9, false, ["a"], &mut plain).expect("fits");
        let mut padded = plain.clone();
        padded.extend_from_slice(&[1, 2, 3]);
        let len = (padded.len() - 2) as u16;
        padded[..2].copy_from_slice(&len.to_be_bytes());
        let decode = |b: &[u8]| {
            let (payload, _) = parse_frame(b, 65_535).expect("valid").expect("whole");
            let m = Message::decode(payload).expect("decodes");
            let mut out = Vec::new();
            m.encode(&mut out).expect("encodes");
            out
        };
        assert_eq!(decode(&padded), plain);
        let (pp, _) = parse_frame(&padded, 65_535).expect("valid").expect("whole");
        let (qp, _) = parse_frame(&plain, 65_535).expect("valid").expect("whole");
        assert_eq!(
            Message::decode(pp).expect("decodes"),
            Message::decode(qp).expect("decodes")
        );
        let mut members = Vec::new();
        CrossMembers::encode(
            [Member {
                serv_id: 1,
                serv_name: "s",
                cross_pos: 2,
            }],
            &mut members,
        )
        .expect("fits");
        let mut padded = members.clone();
        padded.push(7);
        let len = (padded.len() - 2) as u16;
        padded[..2].copy_from_slice(&len.to_be_bytes());
        let (pp, _) = parse_frame(&padded, 65_535).expect("valid").expect("whole");
        let (qp, _) = parse_frame(&members, 65_535)
            .expect("valid")
            .expect("whole");
        assert_eq!(
            Message::decode(pp).expect("decodes"),
            Message::decode(qp).expect("decodes")
        );
    }

    #[test]
    fn a_snapshot_re_encodes_its_last_byte_as_it_came() {
        // Found by the `messages` fuzz target: a `last` of 5 came back as 0.
        let mut frame = Vec::new();
        WhitelistSnapshot::encode_flag(0, 5, [], &mut frame).expect("fits");
        let (payload, _) = parse_frame(&frame, 65_535).expect("valid").expect("whole");
        let m = Message::decode(payload).expect("decodes");
        let mut again = Vec::new();
        m.encode(&mut again).expect("encodes");
        assert_eq!(again, frame);
    }

    #[test]
    fn an_empty_snapshot_is_one_last_frame() {
        let mut out = Vec::new();
        assert_eq!(WhitelistSnapshot::encode_split(3, [], &mut out), 1);
        assert_eq!(frames(&out), vec![(3, 1, vec![])]);
    }

    #[test]
    fn a_large_snapshot_spans_frames_with_last_only_on_the_final_one() {
        let entries: Vec<String> = (0..100_000).map(|i| format!("player-{i:08}")).collect();
        let mut out = Vec::new();
        let n = WhitelistSnapshot::encode_split(7, entries.iter().map(|s| s.as_str()), &mut out);
        let got = frames(&out);
        assert_eq!(got.len(), n);
        assert!(n > 1);
        let lasts: Vec<u8> = got.iter().map(|f| f.1).collect();
        assert_eq!(lasts.iter().filter(|&&l| l == 1).count(), 1);
        assert_eq!(*lasts.last().expect("frames"), 1);
        let all: Vec<String> = got.into_iter().flat_map(|f| f.2).collect();
        assert_eq!(all, entries);
    }
}
