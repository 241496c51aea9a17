//! The admin API's HTTP edge cases, each over a real socket: request framing a proxy could read
//! differently (RFC 9112), the bearer scheme's case, and the request deadline for a partial
//! request pipelined behind a complete one.

mod common;

use common::{durable_config, exchange, parse_response, start, temp_dir, ADMIN_TOKEN};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn whitelist_post(content_length_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /api/whitelist HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\n{content_length_headers}\r\n{body}"
    )
    .into_bytes()
}

#[test]
fn ambiguous_content_lengths_are_400_and_apply_nothing() {
    let dir = temp_dir("admin-edges-cl");
    let server = start(durable_config(&dir));
    let addr = server.admin.expect("admin");
    let body = r#"{"entries":["mallory"]}"#;
    let n = body.len();
    for headers in [
        format!("Content-Length: 0\r\nContent-Length: {n}\r\n"),
        format!("Content-Length: {n}\r\nContent-Length: 0\r\n"),
        format!("Content-Length: +{n}\r\n"),
    ] {
        let resp = exchange(addr, &whitelist_post(&headers, body));
        assert_eq!(parse_response(&resp).0, 400, "{headers:?}");
    }
    let listed = common::admin(&server, "GET", "/api/whitelist", None, 200);
    assert!(
        !listed.to_string().contains("mallory"),
        "no body was applied: {listed}"
    );
    // The same value twice is unambiguous and served.
    let twice = format!("Content-Length: {n}\r\nContent-Length: {n}\r\n");
    let resp = exchange(addr, &whitelist_post(&twice, body));
    assert_eq!(parse_response(&resp).0, 200);
    server.stop().expect("stop");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_bearer_scheme_is_case_insensitive_and_the_token_is_not() {
    let dir = temp_dir("admin-edges-bearer");
    let server = start(durable_config(&dir));
    let addr = server.admin.expect("admin");
    let get = |auth: &str| {
        let raw = format!(
            "GET /api/nodes HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: {auth}\r\n\r\n"
        );
        parse_response(&exchange(addr, raw.as_bytes())).0
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        assert_eq!(get(&format!("{scheme} {ADMIN_TOKEN}")), 200, "{scheme}");
    }
    assert_eq!(get(&format!("Bearer {}", ADMIN_TOKEN.to_uppercase())), 401);
    assert_eq!(get(&format!("Basic {ADMIN_TOKEN}")), 401);
    assert_eq!(get(&format!("Bearer{ADMIN_TOKEN}")), 401);
    server.stop().expect("stop");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_partial_request_pipelined_behind_a_complete_one_has_the_request_deadline() {
    let dir = temp_dir("admin-edges-pipelined");
    let server = start(durable_config(&dir));
    let addr = server.admin.expect("admin");
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /api/nodes HTTP/1.1\r\nHost:")
        .expect("write");
    let started = Instant::now();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("closed by the server");
    let waited = started.elapsed();
    let (status, body) = parse_response(&resp);
    assert_eq!(status, 200, "the complete request is answered: {body}");
    assert!(
        body.contains("ok") && !body.contains("HTTP/1.1"),
        "one response only: {body}"
    );
    // The request deadline (10 s), not the 60 s idle limit.
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(20),
        "closed after {waited:?}"
    );
    server.stop().expect("stop");
    std::fs::remove_dir_all(&dir).ok();
}
