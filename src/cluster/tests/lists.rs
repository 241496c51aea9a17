//! The public server lists: what moves `list_generation`, rendering once per change, ETags
//! and new settings.

use super::*;

#[test]
fn list_generation_moves_only_with_what_a_server_list_shows() {
    let mut h = H::with(Config {
        busy_threshold: 10,
        full_threshold: 20,
        ..config()
    });
    let mut last = h.c.list_generation();
    let mut moved = |h: &H| {
        let now = h.c.list_generation();
        let did = now != last;
        last = now;
        did
    };
    h.game(1, 101, "p");
    assert!(moved(&h), "online");
    let mut report = Vec::new();
    for (online, shows) in [(5, false), (10, true), (15, false), (20, true), (3, true)] {
        report.clear();
        StatusReport { online }.encode(&mut report);
        h.feed(1, &report);
        assert_eq!(moved(&h), shows, "{online} players");
    }
    h.feed(1, &hb(7));
    assert!(!moved(&h), "a heartbeat");
    h.c.whitelist_change(&["vip"], true).expect("writable");
    assert!(!moved(&h), "the whitelist is not in the list");
    assert_eq!(h.c.set_maintenance(101, true), Ok(true));
    assert!(moved(&h), "maintenance");
    assert_eq!(h.c.set_maintenance(101, true), Ok(false));
    assert!(!moved(&h), "no change");
    h.release(1);
    assert!(moved(&h), "offline");
}

fn game_opening_at(h: &mut H, conn: ConnId, id: u32, plat: &str, open_time: u32) {
    h.login(conn, 1, id);
    let mut v = Vec::new();
    GameInfo {
        serv_id: id,
        serv_name: "S",
        open_time,
        cross_plat: plat,
        cross_server_id: 0,
        cross_pos: 0,
        addr: "a:1",
    }
    .encode(&mut v)
    .expect("fits");
    h.feed(conn, &v);
    h.got(conn);
}

fn statuses(list: &crate::admin::public::Rendered) -> Vec<(u64, String, bool)> {
    let v: serde_json::Value = serde_json::from_slice(&list.body).expect("json");
    v["servers"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| {
            (
                s["id"].as_u64().expect("id"),
                s["status"].as_str().expect("status").to_string(),
                s["recommended"] == true,
            )
        })
        .collect()
}

#[test]
fn public_lists_render_once_per_change_and_at_most_once_a_second() {
    use crate::admin::public::{PublicLists, PublicSettings, MIN_RENDER_INTERVAL_MS};
    let mut h = H::with(Config {
        busy_threshold: 10,
        full_threshold: 20,
        ..config()
    });
    let mut lists = PublicLists::new(PublicSettings {
        new_server_secs: 100,
        max_age_secs: 5,
    });
    game_opening_at(&mut h, 1, 101, "p", T0 as u32 - 1_000);
    game_opening_at(&mut h, 2, 102, "p", T0 as u32 + 5);
    let list = |lists: &mut PublicLists, h: &H| lists.list(&h.c, "p", h.now).cloned();
    let first = list(&mut lists, &h).expect("known platform");
    assert_eq!(
        statuses(&first),
        [
            (101, "normal".into(), true),
            (102, "upcoming".into(), false)
        ]
    );
    for _ in 0..100 {
        assert_eq!(list(&mut lists, &h).as_ref(), Some(&first));
    }
    assert_eq!(lists.renders(), 1, "unchanged: rendered once");
    assert!(lists.list(&h.c, "nowhere", h.now).is_none());
    assert_eq!(
        lists.renders(),
        1,
        "unknown platforms are not rendered into the cache"
    );
    // A change within the second is served stale, then rendered once.
    let mut report = Vec::new();
    StatusReport { online: 10 }.encode(&mut report);
    h.feed(1, &report);
    h.now.mono_ms += MIN_RENDER_INTERVAL_MS - 1;
    assert_eq!(list(&mut lists, &h).as_ref(), Some(&first));
    h.now.mono_ms += 1;
    let busy = list(&mut lists, &h).expect("list");
    assert_eq!(statuses(&busy)[0], (101, "busy".into(), true));
    assert_ne!(busy.etag, first.etag);
    list(&mut lists, &h);
    assert_eq!(lists.renders(), 2);
    // Time alone: 102 opens (new, and the newest enterable), later stops being new.
    h.now.mono_ms += 10_000;
    h.now.unix_secs += 5;
    let opened = list(&mut lists, &h).expect("list");
    assert_eq!(
        statuses(&opened),
        [(101, "busy".into(), false), (102, "new".into(), true)]
    );
    h.now.mono_ms += 200_000;
    h.now.unix_secs += 100;
    let old = list(&mut lists, &h).expect("list");
    assert_eq!(statuses(&old)[1], (102, "normal".into(), true));
    assert_eq!(lists.renders(), 4);
    // Maintenance and offline: nothing enterable is left but 101.
    assert_eq!(h.c.set_maintenance(102, true), Ok(true));
    h.now.mono_ms += MIN_RENDER_INTERVAL_MS;
    assert_eq!(
        statuses(list(&mut lists, &h).as_ref().expect("list")),
        [
            (101, "busy".into(), true),
            (102, "maintenance".into(), false)
        ]
    );
    h.release(1);
    h.now.mono_ms += MIN_RENDER_INTERVAL_MS;
    assert_eq!(
        statuses(list(&mut lists, &h).as_ref().expect("list")),
        [
            (101, "offline".into(), false),
            (102, "maintenance".into(), false)
        ]
    );
}

#[test]
fn public_answers_carry_the_etag_and_a_match_is_304() {
    use crate::admin::http::parse_request;
    use crate::admin::public::{PublicLists, PublicSettings};
    let mut h = H::new();
    h.game(1, 101, "p 1");
    let mut lists = PublicLists::new(PublicSettings {
        new_server_secs: 0,
        max_age_secs: 42,
    });
    let mut ask = |h: &H, head: &str| {
        let (req, _) = parse_request(head.as_bytes()).expect("ok").expect("whole");
        let mut out = Vec::new();
        let answer = lists.answer(&req, &h.c, h.now, true, &mut out);
        if let Some(body) = &answer.body {
            out.extend_from_slice(body);
        }
        (answer.status, String::from_utf8(out).expect("utf8"))
    };
    let (status, text) = ask(&h, "GET /public/servers/p%201 HTTP/1.1\r\n\r\n");
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("Cache-Control: public, max-age=42\r\n"),
        "{text}"
    );
    let etag = text
        .lines()
        .find_map(|l| l.strip_prefix("ETag: "))
        .expect("an ETag")
        .to_string();
    let body = text.split_once("\r\n\r\n").expect("head").1;
    assert!(body.contains("\"id\":101"), "{body}");
    assert!(!body.contains("127.0.0.1"), "no peer addresses: {body}");
    let (status, text) = ask(
        &h,
        &format!("GET /public/servers/p%201 HTTP/1.1\r\nIf-None-Match: {etag}\r\n\r\n"),
    );
    assert_eq!(status, 304);
    assert!(text.ends_with("\r\n\r\n") && text.contains(&etag), "{text}");
    assert!(!text.contains("Content-Length"), "{text}");
    let (status, text) = ask(&h, "HEAD /public/servers/p%201 HTTP/1.1\r\n\r\n");
    assert_eq!(status, 200);
    assert!(text.ends_with("\r\n\r\n"), "no body for HEAD: {text}");
    assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
    let (status, text) = ask(&h, "GET /public/servers/other HTTP/1.1\r\n\r\n");
    assert_eq!(status, 200);
    assert!(
        text.ends_with("{\"plat\":\"other\",\"servers\":[]}"),
        "{text}"
    );
    for (head, want) in [
        ("POST /public/servers/p HTTP/1.1\r\n\r\n", 405),
        ("GET /public/servers/ HTTP/1.1\r\n\r\n", 404),
        ("GET /public/servers/a/b HTTP/1.1\r\n\r\n", 404),
        ("GET /api/nodes HTTP/1.1\r\n\r\n", 404),
    ] {
        assert_eq!(ask(&h, head).0, want, "{head}");
    }
}

#[test]
fn public_lists_follow_new_settings_at_once() {
    use crate::admin::public::{PublicLists, PublicSettings};
    let mut h = H::new();
    game_opening_at(&mut h, 1, 101, "p", T0 as u32 - 10);
    let mut lists = PublicLists::new(PublicSettings {
        new_server_secs: 100,
        max_age_secs: 5,
    });
    let first = lists.list(&h.c, "p", h.now).cloned().expect("list");
    assert_eq!(statuses(&first), [(101, "new".into(), true)]);
    let same = PublicSettings {
        new_server_secs: 100,
        max_age_secs: 5,
    };
    lists.reconfigure(same);
    lists.list(&h.c, "p", h.now);
    assert_eq!(lists.renders(), 1, "unchanged settings keep the cache");
    lists.reconfigure(PublicSettings {
        new_server_secs: 0,
        max_age_secs: 5,
    });
    let now = lists.list(&h.c, "p", h.now).cloned().expect("list");
    assert_eq!(
        statuses(&now),
        [(101, "normal".into(), true)],
        "no waiting a second"
    );
}
