//! Setting a node up: [`Builder`] and [`LoginNode::with_handler`] (bind the listeners, open
//! the state, start the store thread), the accessors an embedder uses before and around
//! `run`, and [`ShutdownHandle`]. Kept apart from the loop: nothing here runs per turn.

use super::{
    durability, http_conn, unix_now, LoginNode, Reload, LISTENER, READ_BUF_LEN, SIGNALS, WAKER,
};
use crate::admin::metrics::IoStats;
use crate::cluster::{Cluster, Handler, NoHandler, Now};
use crate::config::Config;
use crate::state::{Db, StoreThread};
use log::{error, info, warn};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Waker};
use slab::Slab;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Stops a running [`LoginNode`] from any thread.
#[derive(Clone)]
pub struct ShutdownHandle {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Asks the node to shut down: KICK 4 to every node, a brief flush, then `run` returns.
    pub fn shutdown(&self) {
        self.flag.store(true, Ordering::Release);
        if let Err(e) = self.waker.wake() {
            error!("shutdown: could not wake the poll loop: {e}");
        }
    }
}

/// Binds a TCP listener with a deep backlog (mio's own bind uses 1024; a burst of reconnecting
/// nodes overflows that and waits a full second to retry) and `TCP_NODELAY` set: Linux copies
/// it to every accepted connection (see [`super::ACCEPTED_HAVE_NODELAY`]), one system call
/// per handshake fewer than setting it on each.
fn bind_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(4096);
    if somaxconn < 4096 {
        warn!("net.core.somaxconn is {somaxconn}: the listen backlog is capped there; 4096 or more is recommended");
    }
    // The kernel caps the backlog at somaxconn; ask for at least 4096.
    socket.listen(somaxconn.max(4096))?;
    Ok(socket.into())
}

/// The store thread of a failover group member (contract §6).
#[cfg(feature = "etcd")]
fn spawn_group(
    config: &Config,
    member: String,
    audit: Option<std::fs::File>,
    wake: Box<dyn Fn() + Send>,
) -> io::Result<StoreThread> {
    let cfg = crate::state::group::GroupConfig {
        endpoints: config.etcd.clone(),
        prefix: config.etcd_prefix.clone(),
        member,
        lease_ttl: config.lease_ttl,
        max_txn_ops: config.etcd_max_txn_ops as usize,
    };
    info!(
        "failover group {} on {}: member {}, lease {} s; standing by until elected",
        cfg.prefix,
        cfg.endpoints.join(","),
        cfg.member,
        cfg.lease_ttl
    );
    StoreThread::spawn_group(cfg, audit, wake)
}

#[cfg(not(feature = "etcd"))]
fn spawn_group(
    _config: &Config,
    _member: String,
    _audit: Option<std::fs::File>,
    _wake: Box<dyn Fn() + Send>,
) -> io::Result<StoreThread> {
    Err(io::Error::other(
        "--etcd: this build has no failover support (the `etcd` cargo feature is off)",
    ))
}

impl LoginNode<NoHandler> {
    /// Binds the node port of `config`; application commands are ignored.
    pub fn bind(config: Config) -> io::Result<Self> {
        LoginNode::with_handler(config, NoHandler)
    }

    /// A builder for setting a node up in code, starting from [`Config::default`].
    ///
    /// ```no_run
    /// use login_node::{Context, Handler, LoginNode, NodeKey};
    ///
    /// struct Echo;
    /// impl Handler for Echo {
    ///     fn app_command(&mut self, ctx: &mut Context<'_>, from: NodeKey, cmd: u16, body: &[u8]) {
    ///         let _ = ctx.send(from, cmd, body);
    ///     }
    /// }
    ///
    /// let mut node = LoginNode::builder()
    ///     .listen("0.0.0.0:7700".parse().unwrap())
    ///     .token("a-long-random-secret")
    ///     .heartbeat(10, 30)
    ///     .state_dir(Some("/var/lib/my-game/login".into()))
    ///     .admin(Some("127.0.0.1:7701".parse().unwrap()), "another-long-secret")
    ///     .handler(Echo)
    ///     .build()?;
    /// node.run()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn builder() -> Builder<NoHandler> {
        Builder {
            config: Config::default(),
            handler: NoHandler,
        }
    }
}

/// Sets up a [`LoginNode`] in code: every [`Config`] field has a setter or comes from
/// [`Builder::config`]; [`Builder::build`] validates the result as the binary does.
pub struct Builder<H: Handler = NoHandler> {
    config: Config,
    handler: H,
}

impl<H: Handler> Builder<H> {
    /// Replaces the whole configuration (setters after this change single fields of it).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The node port address.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen = addr;
        self
    }

    /// The shared AUTH token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.config.token = token.into();
        self
    }

    /// A second accepted token during a rotation (`None` to stop accepting it).
    pub fn previous_token(mut self, token: Option<String>) -> Self {
        self.config.previous_token = token;
        self
    }

    /// Heartbeat interval announced to nodes and the silence after which they are dropped.
    pub fn heartbeat(mut self, interval_secs: u16, timeout_secs: u16) -> Self {
        self.config.heartbeat_interval = interval_secs;
        self.config.heartbeat_timeout = timeout_secs;
        self
    }

    /// The durable state directory (`None`: state in memory only).
    pub fn state_dir(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.config.state_dir = dir;
        self
    }

    /// The admin API's address (`None`: no admin API) and bearer token.
    pub fn admin(mut self, listen: Option<SocketAddr>, token: impl Into<String>) -> Self {
        self.config.admin_listen = listen;
        self.config.admin_token = token.into();
        self
    }

    /// Peer addresses allowed on the node port (empty: all).
    pub fn allow(mut self, blocks: Vec<crate::net::Cidr>) -> Self {
        self.config.allow = blocks;
        self
    }

    /// Capacity of a cross node that reports 0.
    pub fn default_capacity(mut self, capacity: u16) -> Self {
        self.config.default_capacity = capacity;
        self
    }

    /// The embedder's handler.
    pub fn handler<H2: Handler>(self, handler: H2) -> Builder<H2> {
        Builder {
            config: self.config,
            handler,
        }
    }

    /// Validates the configuration (as the binary does: an error names the key), opens the
    /// state directory and binds the listeners.
    pub fn build(self) -> io::Result<LoginNode<H>> {
        LoginNode::with_handler(self.config, self.handler)
    }
}

impl<H: Handler> LoginNode<H> {
    /// Binds the node port of `config`, handing application events to `handler`. The
    /// configuration is first checked by [`Config::validate`], as the binary checks its own
    /// (an `InvalidInput` error names the key).
    pub fn with_handler(config: Config, handler: H) -> io::Result<Self> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.0))?;
        let poll = Poll::new()?;
        let mut listener = TcpListener::from_std(bind_listener(config.listen)?);
        let local_addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let start = Instant::now();
        let now = Now {
            mono_ms: 0,
            unix_secs: unix_now(),
        };
        let mut cluster = Cluster::new(&config, now);
        let db = match &config.state_dir {
            // A failover group keeps its state in etcd (the state directory holds only the
            // audit log then).
            Some(dir) if !config.etcd.is_empty() => {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
                None
            }
            _ if !config.etcd.is_empty() => None,
            Some(dir) => {
                let (db, state) = Db::open(dir).map_err(io::Error::other)?;
                info!(
                    "state {}: {} assignments, whitelist version {} ({} entries), {} in maintenance",
                    dir.display(),
                    state.assignments.len(),
                    state.whitelist_version,
                    state.whitelist.len(),
                    state.maintenance.len()
                );
                cluster.restore(state);
                Some(db)
            }
            None => {
                warn!("no state directory: assignments, whitelist and flags live in memory only");
                None
            }
        };
        let admin = http_conn::AdminSide::bind(&config, &poll)?;
        let mut durability = durability::Durability::default();
        let wake = waker.clone();
        let wake: Box<dyn Fn() + Send> = Box::new(move || {
            let _ = wake.wake();
        });
        if let Some(db) = db {
            durability.store = Some(StoreThread::spawn(db, admin.audit_file()?, wake)?);
            durability.space_commits();
        } else if !config.etcd.is_empty() {
            let member = config
                .member_name
                .clone()
                .unwrap_or_else(|| local_addr.to_string());
            durability.store = Some(spawn_group(&config, member, admin.audit_file()?, wake)?);
        }
        Ok(LoginNode {
            cluster,
            durability,
            admin,
            io_stats: IoStats::default(),
            reload: None,
            config,
            poll,
            events: Events::with_capacity(1024),
            listener,
            local_addr,
            conns: Slab::new(),
            handler,
            read_buf: vec![0u8; READ_BUF_LEN].into_boxed_slice(),
            reply: Vec::with_capacity(4096),
            dirty: Vec::new(),
            pending_reads: Vec::new(),
            accept_more: false,
            accept_retry: None,
            emfile_logged_at: None,
            fired_deadlines: Vec::new(),
            shutdown: Arc::new(AtomicBool::new(false)),
            waker,
            signals: None,
            start,
        })
    }

    /// The address the node port is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the admin API is bound to, if it is enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.local_addr()
    }

    /// The address of the players' server list listener (`public_listen`), if set.
    pub fn public_addr(&self) -> Option<SocketAddr> {
        self.admin.public_addr()
    }

    /// Makes SIGHUP (after [`Self::handle_signals`]) re-read the configuration with `reload`
    /// and apply its reloadable keys.
    pub fn set_reload(&mut self, reload: Reload) {
        self.reload = Some(reload);
    }

    /// Test hook: while `switch` is true, state writes fail as on a full disk.
    #[doc(hidden)]
    pub fn inject_journal_fault(&mut self, switch: Arc<AtomicBool>) {
        if let Some(store) = &self.durability.store {
            store.inject_fault(switch);
        }
    }

    /// A handle that stops [`Self::run`] from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            flag: self.shutdown.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Makes SIGTERM and SIGINT shut the node down gracefully, and SIGHUP reload the
    /// configuration (see [`Self::set_reload`]).
    pub fn handle_signals(&mut self) -> io::Result<()> {
        let mut signals = signal_hook_mio::v1_0::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGHUP,
        ])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// The cluster state (read-only).
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The embedder's handler.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn accepted_connections_have_nodelay_without_setting_it_on_each() {
        let listener = bind_listener("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        listener.set_nonblocking(false).expect("blocking");
        let (accepted, _) = listener.accept().expect("accept");
        // What the loop relies on when it skips set_nodelay after accept.
        const { assert!(super::super::ACCEPTED_HAVE_NODELAY) };
        assert!(accepted.nodelay().expect("nodelay"));
    }
}
