//! The `login-node` command: configuration from defaults, a TOML file and flags; logging;
//! then the reactor until SIGTERM/SIGINT. SIGHUP re-reads the same arguments and file.

use login_node::config::{Config, DEFAULT_TOKEN};
use login_node::reactor::LoginNode;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{}", Config::help());
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("login-node {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_args(args.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("login-node: bad configuration: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    if config.token == DEFAULT_TOKEN {
        log::warn!("*** USING THE DEFAULT DEVELOPMENT TOKEN: any process on this host can log in as any node. Set --token (or token in the config file) before real use. ***");
    }
    raise_nofile_limit();
    if config.admin_token == login_node::config::DEFAULT_ADMIN_TOKEN
        && config.admin_listen.is_some()
    {
        log::warn!("*** USING THE DEFAULT ADMIN TOKEN: any local process can drive the admin API. Set --admin-token before real use. ***");
    }
    let mut node = match LoginNode::bind(config.clone()) {
        Ok(n) => n,
        Err(e) => {
            log::error!("cannot start (node port {}): {e}", config.listen);
            log::logger().flush();
            return ExitCode::from(1);
        }
    };
    node.set_reload(Box::new(move || Config::from_args(args.clone())));
    if let Err(e) = node.handle_signals() {
        log::error!("cannot install signal handlers: {e}");
        log::logger().flush();
        return ExitCode::from(1);
    }
    match node.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("poll loop failed: {e}");
            log::logger().flush();
            ExitCode::from(1)
        }
    }
}

/// Logs to stderr (simplelog over a buffer the reactor flushes once per loop turn, before it
/// blocks), so a burst of connects costs one write, not one per line. A panic flushes what is
/// buffered first.
fn init_logging(config: &Config) {
    let _ = login_node::logging::init_stderr(config.log_level.filter());
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        log::logger().flush();
        default_hook(info);
    }));
}

/// Raises the soft open-file limit to the hard limit: each node is a descriptor.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid, exclusively borrowed `lim`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the valid `raised` struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            log::warn!("could not raise the open-file limit from {}", lim.rlim_cur);
            return;
        }
    }
    log::info!("open-file limit: {}", lim.rlim_max);
}
