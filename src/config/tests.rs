//! Unit tests of the configuration: defaults, flags, the TOML file, validation, reload keys.

use super::*;

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

#[test]
fn defaults_are_a_working_loopback_node() {
    let c = Config::from_args(Vec::new()).expect("defaults valid");
    assert_eq!(c.listen.to_string(), "127.0.0.1:7700");
    assert_eq!(c.token, DEFAULT_TOKEN);
    assert_eq!(c.duplicate_policy, DuplicatePolicy::Replace);
}

#[test]
fn flags_override_defaults_in_both_spellings() {
    let c = Config::from_args(args("--heartbeat-interval 5 --heartbeat-timeout=12 --auth-timeout 0.25 --duplicate-policy reject"))
        .expect("valid");
    assert_eq!(
        (c.heartbeat_interval, c.heartbeat_timeout, c.auth_timeout_ms),
        (5, 12, 250)
    );
    assert_eq!(c.duplicate_policy, DuplicatePolicy::Reject);
}

#[test]
fn default_token_refused_off_loopback() {
    let e = Config::from_args(args("--listen 0.0.0.0:7700")).expect_err("refused");
    assert!(e.0.starts_with("token:"), "{e}");
    Config::from_args(args("--listen 0.0.0.0:7700 --token s3cret")).expect("custom token is fine");
}

#[test]
fn max_frame_below_the_smallest_auth_is_refused() {
    let e = Config::from_args(args("--max-frame 28")).expect_err("too small");
    assert!(e.0.starts_with("max_frame:") && e.0.contains("AUTH"), "{e}");
    let c = Config::from_args(args("--max-frame 29")).expect("the smallest AUTH fits");
    assert_eq!(c.max_frame, MIN_AUTH_PAYLOAD);
}

#[test]
fn errors_name_the_key() {
    for (a, key) in [
        ("--max-frame 3", "max_frame"),
        ("--heartbeat-interval x", "heartbeat_interval"),
        ("--duplicate-policy maybe", "duplicate_policy"),
        ("--listen nowhere", "listen"),
        ("--log-level loud", "log_level"),
    ] {
        let e = Config::from_args(args(a)).expect_err(a);
        assert!(e.0.contains(key), "{a}: {e}");
    }
    assert!(Config::from_args(args("--bogus 1"))
        .expect_err("unknown")
        .0
        .contains("--bogus"));
    assert!(Config::from_args(args("--token"))
        .expect_err("no value")
        .0
        .contains("needs a value"));
}

#[test]
fn toml_keys_apply_and_unknown_keys_are_refused() {
    let mut c = Config::default();
    c.merge_toml("listen = \"127.0.0.1:9\"\nheartbeat_timeout = 40\nauth_timeout = 1.5\nduplicate_policy = \"reject\"\n")
        .expect("valid");
    assert_eq!(c.listen.port(), 9);
    assert_eq!(c.heartbeat_timeout, 40);
    assert_eq!(c.auth_timeout_ms, 1_500);
    let e = c.merge_toml("heartbeat_intervall = 3").expect_err("typo");
    assert!(e.0.contains("heartbeat_intervall"), "{e}");
    let e = c
        .merge_toml("max_connections = \"many\"")
        .expect_err("type");
    assert!(
        e.0.contains("max_connections") || e.0.contains("integer"),
        "{e}"
    );
    let e = c.merge_toml("max_frame = 70000").expect_err("range");
    assert!(e.0.contains("max_frame"), "{e}");
}

#[test]
fn timeout_must_exceed_interval() {
    let e = Config::from_args(args("--heartbeat-interval 30 --heartbeat-timeout 30"))
        .expect_err("invalid");
    assert!(e.0.contains("heartbeat_timeout"));
}

#[test]
fn example_config_parses() {
    let text = include_str!("../../login-node.example.toml");
    let mut c = Config::default();
    c.merge_toml(text).expect("the shipped example is valid");
    assert_eq!(c, Config::default(), "the example shows the defaults");
}

#[test]
fn operating_keys_parse_and_validate() {
    let c = Config::from_args(args(
        "--state-dir /var/lib/ln --admin-listen off --busy-threshold 5 --full-threshold 9 --audit-log /tmp/a.log",
    ))
    .expect("valid");
    assert_eq!(c.state_dir.as_deref(), Some(Path::new("/var/lib/ln")));
    assert_eq!(c.admin_listen, None);
    assert_eq!((c.busy_threshold, c.full_threshold), (5, 9));
    assert_eq!(c.audit_path().as_deref(), Some(Path::new("/tmp/a.log")));
    let mem = Config::from_args(vec!["--state-dir".into(), String::new()]).expect("valid");
    assert_eq!((mem.state_dir.clone(), mem.audit_path()), (None, None));
    assert_eq!(
        Config::default().audit_path().as_deref(),
        Some(Path::new("state/audit.log"))
    );
    let e = Config::from_args(args("--busy-threshold 10 --full-threshold 5")).expect_err("bad");
    assert!(e.0.starts_with("full_threshold"), "{e}");
    let e = Config::from_args(args("--admin-listen nowhere")).expect_err("bad");
    assert!(e.0.contains("admin_listen"), "{e}");
    let c = Config::from_args(args(
        "--public-listen 0.0.0.0:7702 --public-max-age 30 --new-server-days 0",
    ))
    .expect("valid");
    assert_eq!(c.public_listen, Some("0.0.0.0:7702".parse().expect("addr")));
    assert_eq!((c.public_max_age, c.new_server_days), (30, 0));
    let mut t = Config::default();
    t.merge_toml("public_listen = \"127.0.0.1:9\"\npublic_max_age = 60\nnew_server_days = 3\n")
        .expect("valid");
    assert_eq!((t.public_max_age, t.new_server_days), (60, 3));
    assert_eq!(t.public_listen.map(|a| a.port()), Some(9));
    for (a, key) in [
        ("--public-listen nowhere", "public_listen"),
        ("--public-max-age -1", "public_max_age"),
        ("--new-server-days x", "new_server_days"),
    ] {
        let e = Config::from_args(args(a)).expect_err(a);
        assert!(e.0.contains(key), "{a}: {e}");
    }
}

#[test]
fn changed_keys_say_which_need_a_restart_and_never_show_values() {
    let a = Config::default();
    let b = Config {
        token: "new-secret".into(),
        listen: "127.0.0.1:1".parse().expect("addr"),
        full_threshold: 4000,
        ..Config::default()
    };
    let changes = a.changed_keys(&b);
    assert_eq!(
        changes,
        [
            ("listen", true),
            ("token", false),
            ("full_threshold", false)
        ]
    );
    assert!(a.changed_keys(&a).is_empty());
}

#[test]
fn the_viewer_token_is_optional_reloadable_and_not_the_admin_token() {
    assert_eq!(Config::default().viewer_token, None);
    let c = Config::from_args(args("--viewer-token look-only")).expect("ok");
    assert_eq!(c.viewer_token.as_deref(), Some("look-only"));
    let mut f = Config::default();
    f.merge_toml("viewer_token = \"from-file\"").expect("toml");
    assert_eq!(f.viewer_token.as_deref(), Some("from-file"));
    f.merge_toml("viewer_token = \"\"").expect("toml");
    assert_eq!(f.viewer_token, None, "empty = none");
    let e = Config::from_args(args("--admin-token same --viewer-token same")).expect_err("bad");
    assert!(e.0.starts_with("viewer_token"), "{e}");
    assert_eq!(
        Config::default().changed_keys(&c),
        [("viewer_token", false)],
        "reloadable"
    );
}

#[test]
fn every_key_has_its_flag_and_the_flags_are_the_keys() {
    let flags: Vec<String> = FLAGS[1..].iter().map(|(f, _, _)| f.to_string()).collect();
    let from_keys: Vec<String> = keys::KEYS
        .iter()
        .map(|k| format!("--{}", k.replace('_', "-")))
        .collect();
    assert_eq!(flags, from_keys, "one flag per key, in table order");
    assert_eq!(FLAGS[0].0, "--config");
    for key in RELOADABLE {
        assert!(keys::KEYS.contains(key), "{key}");
    }
}

#[test]
fn a_reload_takes_exactly_the_reloadable_keys() {
    let running = Config::default();
    let new = Config::from_args(args(
        "--listen 127.0.0.1:9 --token t2 --previous-token t1 --heartbeat-interval 3 \
         --heartbeat-timeout 7 --auth-timeout 2 --auth-window 5 --max-frame 100 \
         --max-connections 9 --max-write-buffer 70000 --duplicate-policy reject \
         --default-capacity 3 --log-level debug --state-dir /tmp/x --admin-listen off \
         --admin-token a2 --viewer-token v2 --busy-threshold 4 --full-threshold 6 \
         --audit-log /tmp/a --allow 10.0.0.0/8 --auth-fail-limit 2 --auth-fail-window 9 \
         --etcd http://127.0.0.1:2379 --etcd-prefix /p --member-name m --lease-ttl 9 \
         --etcd-max-txn-ops 1024 \
         --public-listen 127.0.0.1:8 --public-max-age 1 --new-server-days 2",
    ))
    .expect("valid");
    let changes = running.changed_keys(&new);
    assert_eq!(
        changes.len(),
        keys::KEYS.len(),
        "every key changed: {changes:?}"
    );
    let mut applied = running.clone();
    applied.apply_reloadable(&new);
    assert_eq!(
        running.changed_keys(&applied),
        changes
            .iter()
            .filter(|(_, restart)| !restart)
            .copied()
            .collect::<Vec<_>>(),
        "what a reload changes is what changed_keys calls reloadable"
    );
    assert!(
        applied
            .changed_keys(&new)
            .iter()
            .all(|(_, restart)| *restart),
        "only keys that need a restart keep their running values"
    );
    for (key, restart) in &changes {
        assert_eq!(*restart, !RELOADABLE.contains(key), "{key}");
    }
    assert!(
        changes.contains(&("etcd", true)) && changes.contains(&("lease_ttl", true)),
        "a changed failover key is reported as needing a restart"
    );
}

#[test]
fn file_values_of_the_wrong_shape_keep_their_messages() {
    // The messages of the code before the key table, pinned.
    for (doc, want) in [
        ("allow = 3", "allow: expected a list of CIDRs, got 3"),
        ("allow = [1]", "allow: expected CIDR strings, got 1"),
        ("etcd = 1", "etcd: expected URL strings, got 1"),
        (
            "etcd = [\"http://a\", 2]",
            "etcd: expected URL strings, got 2",
        ),
        (
            "auth_timeout = \"x\"",
            "auth_timeout: expected seconds, got \"x\"",
        ),
    ] {
        let e = Config::default().merge_toml(doc).expect_err(doc);
        assert_eq!(e.0, want, "{doc}");
    }
    let e = Config::default()
        .merge_toml("max_connections = \"many\"")
        .expect_err("type");
    assert!(
        e.0.ends_with("invalid type: string \"many\", expected i64"),
        "{e}"
    );
    let e = Config::default()
        .merge_toml("heartbeat_intervall = 3")
        .expect_err("unknown");
    assert!(
        e.0.contains("unknown field `heartbeat_intervall`, expected one of `listen`, `token`,")
            && e.0.ends_with("`public_max_age`, `new_server_days`"),
        "{e}"
    );
    let mut c = Config::default();
    c.merge_toml("auth_timeout = 0.5").expect("decimal seconds");
    assert_eq!(c.auth_timeout_ms, 500);
}

/// A change to a default `Config`, as code might make it.
type Change = fn(&mut Config);

#[test]
fn a_config_built_in_code_is_held_to_the_ranges_of_its_flags() {
    let cases: [(&str, Change); 5] = [
        ("lease_ttl", |c| c.lease_ttl = 1),
        ("public_max_age", |c| c.public_max_age = 86_401),
        ("new_server_days", |c| c.new_server_days = 36_501),
        ("viewer_token", |c| c.viewer_token = Some(String::new())),
        ("auth_timeout (ms)", |c| c.auth_timeout_ms = 0),
    ];
    for (key, change) in cases {
        let mut c = Config::default();
        change(&mut c);
        let e = c.validate().expect_err(key);
        assert!(e.0.starts_with(key), "{key}: {e}");
    }
    Config::default()
        .validate()
        .expect("the defaults are valid");
}
