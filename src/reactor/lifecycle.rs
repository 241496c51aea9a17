//! The node's life outside the steady loop: `run` (start-up, the loop, the hand-over of
//! the store), SIGHUP reload and SIGTERM/SIGINT, and the graceful shutdown that KICKs every
//! node and waits briefly for the KICKs to drain.

use super::{notify, LoginNode, SHUTDOWN_FLUSH};
use crate::cluster::{ConnId, Handler};
use log::{debug, error, info, warn};
use mio::{Events, Token};
use std::io;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl<H: Handler> LoginNode<H> {
    /// Runs the loop until shutdown (signal or [`ShutdownHandle`](super::ShutdownHandle));
    /// returns after every node was sent KICK 4 and the connections are closed.
    pub fn run(&mut self) -> io::Result<()> {
        match self.admin.local_addr() {
            Some(a) => info!(
                "login node listening on {}, admin API on {a}",
                self.local_addr
            ),
            None => info!(
                "login node listening on {} (admin API off)",
                self.local_addr
            ),
        }
        if let Some(a) = self.admin.public_addr() {
            info!("players' server list on {a} (GET /public/servers/<plat>)");
        }
        // The start-up lines reach stderr before systemd is told ready, and before the loop
        // blocks in its first poll with no node to wake it.
        log::logger().flush();
        notify::notify("READY=1\nSTATUS=serving");
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        if events.capacity() == 0 {
            // A panic escaped an earlier run() before the buffer was put back.
            events = Events::with_capacity(1024);
        }
        let result = self.run_loop(&mut events);
        self.events = events;
        notify::notify("STOPPING=1");
        result?;
        // The batch in flight, and one last attempt at what is pending: what they announce
        // goes out with the KICKs if they succeed.
        self.finish_store();
        if self.cluster.role() != &crate::cluster::Role::Single {
            // A group member hands over: KICK 6 (connect to another member), then the store
            // thread revokes the lease as it ends, so a standby takes over at once.
            let now = self.now();
            self.lose_role("shutting down", now);
            self.durability.store = None;
        }
        self.shutdown_all();
        Ok(())
    }

    pub(super) fn signals_ready(&mut self) {
        if let Some(signals) = &mut self.signals {
            let mut reload = false;
            for sig in signals.pending() {
                if sig == signal_hook::consts::SIGHUP {
                    reload = true;
                } else {
                    info!("signal {sig} received: shutting down");
                    self.shutdown.store(true, Ordering::Release);
                }
            }
            if reload {
                self.reload_config();
            }
        }
    }

    /// SIGHUP: re-reads the configuration and applies its reloadable keys. A bad file is
    /// rejected whole; the running configuration stays.
    fn reload_config(&mut self) {
        let Some(reload) = &mut self.reload else {
            warn!("SIGHUP: no configuration source to reload from (started without one)");
            return;
        };
        // Judged against the listeners actually bound, not the file's own addresses.
        let bound = (self.local_addr, self.admin.local_addr());
        let new = match reload().and_then(|c| c.check_dev_tokens(bound.0, bound.1).map(|()| c)) {
            Ok(c) => c,
            Err(e) => {
                error!("SIGHUP: configuration rejected, keeping the running one: {e}");
                self.io_stats.reloads_rejected += 1;
                return;
            }
        };
        self.io_stats.reloads_applied += 1;
        let changes = self.config.changed_keys(&new);
        if changes.is_empty() {
            info!("SIGHUP: configuration reloaded, nothing changed");
            return;
        }
        let mut applied = self.config.clone();
        for &(key, restart) in &changes {
            if restart {
                warn!("SIGHUP: {key} changed but needs a restart; the running value stays");
            } else {
                info!("SIGHUP: {key} changed");
            }
        }
        applied.apply_reloadable(&new);
        self.admin
            .lists
            .reconfigure(crate::admin::public::PublicSettings::of(&applied));
        log::set_max_level(applied.log_level.filter());
        self.cluster.reconfigure(&applied);
        self.config = applied;
    }

    pub(super) fn shutdown_all(&mut self) {
        let now = self.now();
        info!(
            "shutting down: {} connections, {} registered nodes",
            self.conns.len(),
            self.cluster.registered()
        );
        if let Err(e) = self.poll.registry().deregister(&mut self.listener) {
            debug!("deregister listener: {e}");
        }
        self.with_outbox(|cluster, io, handler| cluster.shutdown(now, io, handler));
        self.flush_dirty(now, true);
        let deadline = Instant::now() + SHUTDOWN_FLUSH;
        let mut events = Events::with_capacity(256);
        while !self.conns.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if self.poll.poll(&mut events, Some(left)).is_err() {
                break;
            }
            for event in events.iter() {
                let Token(conn) = event.token();
                if event.is_writable() {
                    self.write_ready(conn);
                }
                if event.is_read_closed() || event.is_error() {
                    if let Some(c) = self.conns.get_mut(conn) {
                        // The peer is gone: nothing more will be delivered.
                        c.out.release();
                        if !c.dirty {
                            c.dirty = true;
                            self.dirty.push(conn);
                        }
                    }
                }
            }
            self.flush_dirty(now, true);
        }
        let left: Vec<ConnId> = self.conns.iter().map(|(k, _)| k).collect();
        if !left.is_empty() {
            warn!(
                "shutdown: {} connections did not take their KICK in time",
                left.len()
            );
        }
        for conn in left {
            self.release(conn, now);
        }
        info!("shutdown complete");
        log::logger().flush();
    }
}
