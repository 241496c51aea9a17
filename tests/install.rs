//! The systemd unit and the install steps in docs/ADMIN.md agree, and the binary can read its
//! config when installed that way and run as an unprivileged user.

mod common;

use common::child::{exit_within, free_port, spawn_with_lines, wait_for_line, Proc};
use common::TOKEN;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_login-node");
/// The unprivileged account that stands in for the service user here: `nobody`, `nogroup`.
const TEST_UID: u32 = 65_534;
const TEST_GID: u32 = 65_534;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `KEY=value` of the unit's `[Service]` section, the last one set.
fn unit_value(unit: &str, key: &str) -> Option<String> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .next_back()
        .map(|v| v.trim().to_string())
}

/// The documented `install` of `target` (mode, owner, group), from docs/ADMIN.md's commands.
struct Installed {
    mode: u32,
    owner: Option<String>,
    group: Option<String>,
}

fn documented_install(admin_md: &str, target: &str) -> Installed {
    let line = admin_md
        .lines()
        .find(|l| {
            let words: Vec<&str> = l
                .split('#')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            words.contains(&"install") && words.last() == Some(&target)
        })
        .unwrap_or_else(|| panic!("docs/ADMIN.md installs no {target}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let flag = |f: &str| {
        words
            .iter()
            .position(|w| *w == f)
            .and_then(|i| words.get(i + 1))
            .map(|v| v.to_string())
    };
    let mode = flag("-m").unwrap_or_else(|| panic!("no -m for {target}: {line}"));
    Installed {
        mode: u32::from_str_radix(&mode, 8).expect("octal mode"),
        owner: flag("-o"),
        group: flag("-g"),
    }
}

const CONFIG_DIR: &str = "/etc/login-node";
const CONFIG_FILE: &str = "/etc/login-node/login-node.toml";

#[test]
fn the_unit_runs_as_the_user_the_documented_install_lets_read_the_config() {
    let unit = read("contrib/login-node.service");
    let admin = read("docs/ADMIN.md");
    assert_ne!(
        unit_value(&unit, "DynamicUser").as_deref(),
        Some("yes"),
        "a dynamic uid is in no group the config can be installed for"
    );
    let user = unit_value(&unit, "User").expect("User= in the unit");
    let group = unit_value(&unit, "Group").expect("Group= in the unit");
    let exec = unit_value(&unit, "ExecStart").expect("ExecStart=");
    assert!(exec.ends_with(&format!("--config {CONFIG_FILE}")), "{exec}");
    assert!(
        admin
            .lines()
            .any(|l| l.contains("useradd --system") && l.trim_end().ends_with(&user)),
        "docs/ADMIN.md creates the unit's user {user}"
    );
    for target in [CONFIG_DIR, CONFIG_FILE] {
        let i = documented_install(&admin, target);
        assert_eq!(i.owner.as_deref(), Some("root"), "{target} owned by root");
        assert_eq!(i.group.as_deref(), Some(group.as_str()), "{target}'s group");
        assert_eq!(i.mode & 0o007, 0, "{target} closed to others");
        assert_ne!(i.mode & 0o040, 0, "{target} readable by the group");
        assert_eq!(i.mode & 0o020, 0, "{target} not writable by the service");
    }
}

/// Runs the binary as `TEST_UID`/`TEST_GID` with `--config config`; the stderr lines.
fn run_unprivileged(bin: &Path, config: &Path) -> (Proc, mpsc::Receiver<String>) {
    // setpriv is util-linux's.
    spawn_with_lines(
        Command::new("setpriv")
            .args([
                &format!("--reuid={TEST_UID}"),
                &format!("--regid={TEST_GID}"),
                "--clear-groups",
            ])
            .arg(bin)
            .arg("--config")
            .arg(config),
    )
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn the_binary_reads_the_config_installed_as_documented_as_an_unprivileged_user() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: needs root to install files for another uid and switch to it (CI runs as root)");
        return;
    }
    let admin = read("docs/ADMIN.md");
    let gid_of = |group: Option<&str>| match group {
        // The documented group is the service's own; `nogroup` plays it here.
        Some(_) => TEST_GID,
        None => 0,
    };
    let dir_doc = documented_install(&admin, CONFIG_DIR);
    let file_doc = documented_install(&admin, CONFIG_FILE);

    let root = common::temp_dir("install");
    std::fs::create_dir_all(&root).expect("dir");
    set_mode(&root, 0o755);
    let bin = root.join("login-node");
    std::fs::copy(BIN, &bin).expect("copy the binary");
    set_mode(&bin, 0o755);
    let state = root.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    std::os::unix::fs::chown(&state, Some(TEST_UID), Some(TEST_GID)).expect("chown");
    set_mode(&state, 0o700);
    let etc = root.join("etc");
    std::fs::create_dir_all(&etc).expect("etc");
    std::os::unix::fs::chown(&etc, Some(0), Some(gid_of(dir_doc.group.as_deref()))).expect("chown");
    set_mode(&etc, dir_doc.mode);
    let config = etc.join("login-node.toml");
    let port = free_port();
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\nadmin_listen = \"off\"\nstate_dir = \"{}\"\n",
            state.display()
        ),
    )
    .expect("write config");
    std::os::unix::fs::chown(&config, Some(0), Some(gid_of(file_doc.group.as_deref())))
        .expect("chown");
    set_mode(&config, file_doc.mode);

    let (_p, lines) = run_unprivileged(&bin, &config);
    let deadline = Instant::now() + Duration::from_secs(10);
    if let Err(seen) = wait_for_line(&lines, "listening on", deadline) {
        panic!("not serving with the config installed as documented:\n{seen}");
    }
    // It serves with the config's token, so it read the file.
    common::logged_in(
        format!("127.0.0.1:{port}").parse().expect("addr"),
        login_node::proto::NodeType::Game,
        1,
    );
    drop(_p);

    // The control: a config only root may read stops the start, so the check above can fail.
    set_mode(&config, 0o600);
    let (mut p, lines) = run_unprivileged(&bin, &config);
    let code = exit_within(&mut p.0, Duration::from_secs(10))
        .expect("started with an unreadable config")
        .code();
    let err: Vec<String> = lines.iter().collect();
    assert_eq!(code, Some(2), "{err:?}");
    assert!(err.iter().any(|l| l.contains("login-node.toml")), "{err:?}");
    let _ = std::fs::remove_dir_all(&root);
}
