//! The operator console in a real browser (headless chromium through chromedriver) against a
//! login node on loopback with real game and cross nodes: what an operator clicks reaches the
//! nodes. Screenshots of every page go to `target/console-screenshots/`.

mod browser;
mod common;

use browser::Browser;
use common::*;
use login_node::client::{Client, ServerMessage};
use login_node::proto::GameInfo;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

const VIEWER_TOKEN: &str = "test-viewer-token";
/// Game nodes brought online: more than one page of the table (50 a page).
const GAME_NODES: u32 = 60;

fn screenshots() -> PathBuf {
    // target/tmp/.. = target/
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

fn named_game(server: &Server, id: u32, plat: &str, name: &str) -> Client {
    let info = GameInfo {
        serv_name: name,
        ..game_info(id, plat)
    };
    game_node(server.addr, &info)
}

/// Reads frames until `want` says yes (other frames such as CROSS_ASSIGN are skipped).
fn expect_frame(
    c: &mut Client,
    what: &str,
    want: impl Fn(&ServerMessage) -> bool,
) -> ServerMessage {
    for _ in 0..100 {
        match c.recv(REPLY) {
            Ok(Some(m)) if want(&m) => return m,
            Ok(Some(_)) => continue,
            other => panic!("expected {what}, got {other:?}"),
        }
    }
    panic!("expected {what} among the next 100 frames");
}

/// The response head of `GET path` (no token).
fn head_of(server: &Server, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(server.admin.expect("admin")).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n").expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.split_once("\r\n\r\n").expect("head").0.to_string()
}

fn sign_in(b: &Browser, url: &str, token: &str) {
    b.goto(url);
    b.type_into("#token", token);
    b.click("#signin-button");
    b.find("body[data-loaded='overview']");
}

/// Types `query` into page `page`'s search box and waits until its count says `count`.
fn search(b: &Browser, page: &str, query: &str, count: &str) {
    b.type_into(&format!("#{page}-search"), query);
    b.wait_text(&format!("#{page}-count"), count);
}

/// Clicks `button` and OKs the confirmation dialog once it asks `asks`.
fn confirm(b: &Browser, button: &str, asks: &str) {
    b.click(button);
    b.wait_text("#confirm-text", asks);
    b.click("#confirm-ok");
}

/// The next WHITELIST_DELTA `c` reads.
fn next_delta(c: &mut Client) -> ServerMessage {
    expect_frame(c, "WHITELIST_DELTA", |m| {
        matches!(m, ServerMessage::WhitelistDelta { .. })
    })
}

fn open_page(b: &Browser, page: &str) {
    b.click(&format!("#nav button[data-page='{page}']"));
    b.find(&format!("body[data-loaded='{page}']"));
}

#[test]
fn an_operator_drives_the_cluster_from_the_browser_console() {
    let dir = temp_dir("console");
    let server = start(Config {
        viewer_token: Some(VIEWER_TOKEN.into()),
        // The browser takes seconds to start: nodes must not time out meanwhile.
        heartbeat_timeout: 600,
        ..durable_config(&dir)
    });
    let admin_addr = server.admin.expect("admin");
    let url = format!("http://{admin_addr}/");

    // The page and the API carry the security headers; nobody gets CORS.
    for path in ["/", "/console.js", "/api/nodes"] {
        let head = head_of(&server, path);
        assert!(
            head.contains("\r\nContent-Security-Policy: default-src 'none'; script-src 'self';"),
            "{path}: {head}"
        );
        assert!(head.contains("\r\nX-Frame-Options: DENY"), "{path}: {head}");
        assert!(
            !head.to_ascii_lowercase().contains("access-control-"),
            "{path}: {head}"
        );
    }

    let (_x90, _) = server.cross(9, "asia", 90, 40);
    let (_x91, _) = server.cross(10, "asia", 91, 40);
    let mut g101 = named_game(&server, 101, "asia", "Dragon-101");
    expect_frame(&mut g101, "the first STATUS_PUSH", |m| {
        *m == ServerMessage::StatusPush(0)
    });
    let mut others = Vec::new();
    for id in 102..101 + GAME_NODES {
        others.push(named_game(&server, id, "asia", &format!("Phoenix-{id}")));
    }
    // Players online make some busy and full (STATUS_REPORT).
    for (c, players) in others.iter_mut().skip(1).zip([2500, 3100, 1200, 800]) {
        c.send_status(players).expect("status");
    }
    let out = screenshots();
    let b = Browser::start(&out);

    // Sign in; the overview counts the nodes.
    b.goto(&url);
    b.find("#signin-form");
    b.screenshot(&out.join("signin.png"));
    sign_in(&b, &url, ADMIN_TOKEN);
    b.wait_text("[data-card='games'] .card-value", &GAME_NODES.to_string());
    b.wait_text("[data-card='role'] .card-value", "single");
    b.wait_text("#access", "admin");
    b.screenshot(&out.join("overview.png"));

    // The game node the test brought online is in the table, paged and searchable.
    open_page(&b, "nodes");
    b.wait_text("tr[data-serv='101']", "Dragon-101");
    b.wait_text("#nodes-page", "page 1 of 2");
    b.wait_text("tr[data-serv='104']", "full");
    b.wait_text("tr[data-serv='103']", "busy");
    b.screenshot(&out.join("nodes.png"));
    search(&b, "nodes", "dragon", "1 of 60 game nodes");

    // Maintenance: confirm, and the game node gets STATUS_PUSH 1.
    b.click("tr[data-serv='101'] button[data-action='maintenance']");
    b.wait_text("#confirm-text", "game 101");
    b.screenshot(&out.join("confirm.png"));
    b.click("#confirm-ok");
    expect_frame(&mut g101, "STATUS_PUSH 1", |m| {
        *m == ServerMessage::StatusPush(1)
    });
    b.wait_text("#message", "Maintenance of game 101: done");
    b.wait_text("tr[data-serv='101']", "maintenance");

    // A failing write shows the API's error text: a move to a cross node that does not exist.
    b.click("tr[data-serv='101'] button[data-action='move']");
    b.type_into("#confirm-input", "4242");
    b.click("#confirm-ok");
    b.wait_text("#message", "Move of game 101 failed: 404");

    // Kick: game 102 gets KICK 3 and is closed.
    search(&b, "nodes", "phoenix-102", "1 of 60 game nodes");
    confirm(
        &b,
        "tr[data-serv='102'] button[data-action='kick']",
        "Kick game 102?",
    );
    expect_frame(&mut others[0], "KICK 3", |m| *m == ServerMessage::Kick(3));
    assert!(others[0].closed_within(REPLY), "closed after KICK 3");
    b.wait_text("#message", "Kick of game 102: done");
    search(&b, "nodes", "", "59 of 59 game nodes");

    // Whitelist: two pasted entries reach the game node as WHITELIST_DELTAs.
    open_page(&b, "whitelist");
    b.type_into("#whitelist-add", "player-42\nplayer-43\n");
    confirm(&b, "#whitelist-add-button", "Add 2 entries");
    for (version, entry) in [(1, "player-42"), (2, "player-43")] {
        let delta = next_delta(&mut g101);
        assert_eq!(
            delta,
            ServerMessage::WhitelistDelta {
                version,
                op: 1,
                entry: entry.into()
            }
        );
    }
    b.wait_text("#whitelist-body", "player-43");
    b.wait_text("#whitelist-version", "version 2");
    b.screenshot(&out.join("whitelist.png"));
    // Remove one: WHITELIST_DELTA op 2.
    b.type_into("#whitelist-add", "player-44");
    b.click("#whitelist-add-button");
    b.click("#confirm-ok");
    b.wait_text("#whitelist-version", "version 3");
    search(&b, "whitelist", "44", "1 of 3 entries");
    confirm(
        &b,
        "li[data-entry='player-44'] button[data-action='remove']",
        "Remove \"player-44\"",
    );
    let mut deltas = Vec::new();
    for _ in 0..2 {
        deltas.push(next_delta(&mut g101));
    }
    assert_eq!(
        deltas,
        [
            ServerMessage::WhitelistDelta {
                version: 3,
                op: 1,
                entry: "player-44".into()
            },
            ServerMessage::WhitelistDelta {
                version: 4,
                op: 2,
                entry: "player-44".into()
            }
        ]
    );
    b.wait_text("#whitelist-version", "version 4");

    open_page(&b, "cross");
    b.wait_text("[data-cross='90']", "30 / 40 members");
    b.click("[data-cross='91'] button[data-action='capacity']");
    b.type_into("#confirm-input", "35");
    b.click("#confirm-ok");
    b.wait_text("[data-cross='91']", "capacity override 35");
    b.click("[data-cross='91'] button[data-action='drain']");
    b.click("#confirm-ok");
    b.wait_text("[data-cross='91']", "draining");
    let cross = admin(&server, "GET", "/api/cross", None, 200);
    let x91 = &cross["platforms"][0]["cross_nodes"][1];
    assert_eq!(
        (x91["capacity_override"].as_u64(), x91["draining"].as_bool()),
        (Some(35), Some(true)),
        "{x91}"
    );
    b.screenshot(&out.join("cross.png"));
    open_page(&b, "servers");
    b.wait_text("#servers-body tr[data-serv='101']", "maintenance");
    b.screenshot(&out.join("servers.png"));
    open_page(&b, "audit");
    b.wait_text(
        "#audit-body",
        "admin PUT /api/nodes/game/101/maintenance game 101 maintenance true",
    );
    b.screenshot(&out.join("audit.png"));

    // The viewer token: read-only mode, and a write tried anyway is refused by the node.
    b.click("#signout");
    b.find("#signin-form");
    sign_in(&b, &url, VIEWER_TOKEN);
    b.wait_text("#access", "viewer");
    b.wait_text("#readonly-banner", "Read-only mode");
    open_page(&b, "whitelist");
    assert!(!b.enabled("#whitelist-add-button"), "add is disabled");
    b.script("for (const e of document.querySelectorAll('[disabled]')) e.disabled = false;");
    b.type_into("#whitelist-add", "sneaky");
    b.click("#whitelist-add-button");
    b.click("#confirm-ok");
    b.wait_text("#message", "failed: 403 the viewer token is read-only");
    b.screenshot(&out.join("readonly.png"));
    expect_quiet(&mut g101, Duration::from_millis(300));
    let whitelist = admin(&server, "GET", "/api/whitelist", None, 200);
    assert_eq!(whitelist["version"], 4, "{whitelist}");
    let audit = std::fs::read_to_string(dir.join("audit.log")).expect("audit log");
    assert!(
        audit.contains(" viewer POST /api/whitelist refused: the viewer token is read-only"),
        "{audit}"
    );
    assert!(!audit.contains(VIEWER_TOKEN) && !audit.contains(ADMIN_TOKEN));

    // The page broke no rule of its Content-Security-Policy and threw nothing.
    let problems: Vec<String> = b
        .console_log()
        .into_iter()
        .filter(|l| l.contains("SEVERE") && !l.contains("403") && !l.contains("404"))
        .collect();
    assert!(problems.is_empty(), "browser console: {problems:#?}");
    drop(b);
    drop(others);
    server.stop().expect("clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_viewer_token_reads_everything_and_changes_nothing() {
    let dir = temp_dir("viewer");
    let server = start(Config {
        viewer_token: Some(VIEWER_TOKEN.into()),
        ..durable_config(&dir)
    });
    let addr = server.admin.expect("admin");
    let mut g = named_game(&server, 7, "eu", "Seven");
    expect_frame(&mut g, "the first STATUS_PUSH", |m| {
        *m == ServerMessage::StatusPush(0)
    });
    expect_frame(&mut g, "WHITELIST_SNAPSHOT", |m| {
        matches!(m, ServerMessage::WhitelistSnapshot { last: true, .. })
    });
    admin(
        &server,
        "POST",
        "/api/whitelist",
        Some(r#"{"entry": "a"}"#),
        200,
    );
    next_delta(&mut g);

    // The console's files need no token; the API does.
    assert_eq!(http(addr, "GET", "/", None, None).0, 200);
    assert_eq!(http(addr, "GET", "/favicon.svg", None, None).0, 200);
    assert_eq!(http(addr, "GET", "/api/whoami", None, None).0, 401);
    let who = |token| http(addr, "GET", "/api/whoami", Some(token), None);
    assert_eq!(who(ADMIN_TOKEN), (200, r#"{"access":"admin"}"#.into()));
    assert_eq!(who(VIEWER_TOKEN), (200, r#"{"access":"viewer"}"#.into()));
    assert_eq!(who("test-viewer-token-not").0, 401);

    for path in [
        "/api/nodes",
        "/api/cross",
        "/api/whitelist",
        "/api/servers?plat=eu",
        "/api/audit?lines=5",
    ] {
        let (status, body) = http(addr, "GET", path, Some(VIEWER_TOKEN), None);
        assert_eq!(status, 200, "{path}: {body}");
    }
    let writes = [
        ("POST", "/api/whitelist", r#"{"entry": "b"}"#),
        ("DELETE", "/api/whitelist", r#"{"entry": "a"}"#),
        (
            "PUT",
            "/api/nodes/game/7/maintenance",
            r#"{"maintenance": true}"#,
        ),
        ("POST", "/api/nodes/game/7/kick", ""),
        ("PUT", "/api/cross/1/capacity", r#"{"capacity": 5}"#),
        ("PUT", "/api/cross/1/drain", r#"{"drain": true}"#),
        (
            "POST",
            "/api/assign",
            r#"{"serv_id": 7, "cross_server_id": 1}"#,
        ),
    ];
    for (method, path, body) in writes {
        let (status, text) = http(addr, method, path, Some(VIEWER_TOKEN), Some(body));
        assert_eq!(
            (status, text.as_str()),
            (403, r#"{"error":"the viewer token is read-only"}"#),
            "{method} {path}"
        );
    }
    // Nothing changed and the game node heard nothing.
    expect_quiet(&mut g, Duration::from_millis(300));
    let wl = admin(&server, "GET", "/api/whitelist", None, 200);
    assert_eq!(
        (wl["version"].as_u64(), wl["count"].as_u64()),
        (Some(1), Some(1))
    );

    // The audit log names the role of each token, never the token; the tail is bounded.
    let tail = admin(&server, "GET", "/api/audit?lines=1000", None, 200);
    let lines: Vec<&str> = tail["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l.as_str().expect("a line"))
        .collect();
    assert_eq!(lines.len(), 1 + writes.len(), "{lines:#?}");
    assert!(
        lines[0].contains(" admin POST /api/whitelist whitelist added 1 of 1"),
        "{}",
        lines[0]
    );
    for (line, (method, path, _)) in lines[1..].iter().zip(writes) {
        assert!(
            line.contains(&format!(
                " viewer {method} {path} refused: the viewer token is read-only"
            )),
            "{line}"
        );
    }
    let last = admin(&server, "GET", "/api/audit?lines=1", None, 200);
    assert_eq!(last["lines"].as_array().map(Vec::len), Some(1));
    assert_eq!(last["lines"][0], json_str(lines[lines.len() - 1]));
    for bad in ["0", "1001", "x"] {
        admin(
            &server,
            "GET",
            &format!("/api/audit?lines={bad}"),
            None,
            400,
        );
    }
    let file = std::fs::read_to_string(dir.join("audit.log")).expect("audit log");
    assert!(
        !file.contains(VIEWER_TOKEN) && !file.contains(ADMIN_TOKEN),
        "{file}"
    );

    // Without a viewer token configured, it is just a wrong token.
    drop(g);
    server.stop().expect("stop");
    let server = start(durable_config(&dir));
    let addr = server.admin.expect("admin");
    assert_eq!(
        http(addr, "GET", "/api/nodes", Some(VIEWER_TOKEN), None).0,
        401
    );
    server.stop().expect("stop");
    let _ = std::fs::remove_dir_all(&dir);
}

fn json_str(s: &str) -> serde_json::Value {
    serde_json::Value::String(s.to_string())
}

#[test]
fn the_node_list_is_paged_and_searched_on_the_node() {
    let dir = temp_dir("nodes-page");
    let server = start(durable_config(&dir));
    let (_x, _) = server.cross(9, "eu", 90, 200);
    let games: Vec<Client> = (1..=120)
        .map(|id| named_game(&server, id, "eu", &format!("Phoenix-{id}")))
        .collect();
    admin(
        &server,
        "PUT",
        "/api/nodes/game/7/maintenance",
        Some(r#"{"maintenance": true}"#),
        200,
    );
    let page = |query: &str| admin(&server, "GET", &format!("/api/nodes?{query}"), None, 200);
    let ids = |v: &serde_json::Value| -> Vec<u64> {
        v["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| n["id"].as_u64().expect("id"))
            .collect()
    };

    let last = page("type=game&offset=100&limit=50");
    assert_eq!(
        (last["total"].as_u64(), last["matched"].as_u64()),
        (Some(120), Some(120))
    );
    assert_eq!(ids(&last), (101..=120).collect::<Vec<_>>());
    assert_eq!(last["nodes"][0]["name"], "Phoenix-101");
    assert_eq!(
        ids(&page("type=game")),
        (1..=50).collect::<Vec<_>>(),
        "50 a page by default"
    );
    assert_eq!(
        ids(&page("type=game&q=PHOENIX-11")),
        [11, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119]
    );
    assert_eq!(ids(&page("type=game&q=phoenix-11+eu")).len(), 11);
    assert_eq!(
        page("type=game&q=phoenix-11+asia")["matched"],
        0,
        "every word must match"
    );
    assert_eq!(ids(&page("type=game&status=maintenance")), [7]);
    assert_eq!(page("type=cross")["nodes"][0]["cross_server_id"], 90);
    assert_eq!(page("limit=1000")["matched"], 121, "both types");
    // Without paging parameters the whole list, as before.
    let all = admin(&server, "GET", "/api/nodes", None, 200);
    assert_eq!(all["nodes"].as_array().map(Vec::len), Some(121));
    assert!(all.get("total").is_none());
    for bad in ["limit=0", "limit=1001", "offset=-1", "type=other"] {
        admin(&server, "GET", &format!("/api/nodes?{bad}"), None, 400);
    }
    drop(games);
    server.stop().expect("stop");
    let _ = std::fs::remove_dir_all(&dir);
}
