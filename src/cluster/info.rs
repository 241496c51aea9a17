//! The INFO step: a game node's GAME_INFO or a cross node's CROSS_INFO makes it online (in the
//! allocator, visible to the handler), with what it said journaled and announced.

use super::handler::{Handler, ReportedInfo};
use super::session::{NodeDetails, Phase};
use super::{alloc, handler_guard, Cluster, ConnId, NodeKey, Now, Outbox};
use crate::logging::{Clip, Escaped, Peer};
use crate::proto::{CrossInfo, GameInfo, KickReason};
use log::{info, warn};

impl Cluster {
    pub(super) fn on_game_info(
        &mut self,
        conn: ConnId,
        info: GameInfo<'_>,
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) {
        let key = self.sessions[conn].key;
        if info.serv_id != key.node_id {
            let why = format_args!("GAME_INFO serv_id {} differs from node_id", info.serv_id);
            return self.protocol_error(conn, &why, now, out, handler);
        }
        let Ok(plat) = self.alloc.platforms.intern(info.cross_plat) else {
            return self.platforms_full(conn, "GAME_INFO", info.cross_plat, now, out, handler);
        };
        // Welcome now, or after the pending records are durable (the snapshot and status
        // must not show what is not durable yet).
        let welcome_now = self.operator_seq <= self.durable_seq;
        let s = &mut self.sessions[conn];
        s.phase = Phase::Online;
        s.online_ms = now.mono_ms;
        s.info = NodeDetails::Game {
            open_time: info.open_time,
            cross_plat: plat,
            addr: info.addr.into(),
            players_online: 0,
            welcomed: welcome_now,
        };
        self.stats.online_game += 1;
        self.list_generation += 1;
        if log::log_enabled!(log::Level::Info) {
            key.start_line(&mut self.log_line, s.peer)
                .text(" online: plat ")
                .quoted(s.auth_plat.as_deref().unwrap_or(""))
                .text(" serv_name ")
                .quoted(info.serv_name)
                .text(" cross_plat ")
                .quoted(info.cross_plat)
                .text(" addr ")
                .quoted(info.addr)
                .text(" open_time ")
                .num(info.open_time)
                .text(" reports cross ")
                .num(info.cross_server_id)
                .text("/")
                .num(info.cross_pos);
            info!("{}", self.log_line.as_str());
        }
        // Operator state first (maintenance, whitelist), then the assignment.
        if welcome_now {
            self.welcome(conn, key.node_id, out);
        } else {
            self.owed.welcome.push(conn);
        }
        self.journal_game_facts(key.node_id, &info);
        self.alloc.game_online(
            key.node_id,
            info.serv_name,
            plat,
            (info.cross_server_id, info.cross_pos),
        );
        let online = ReportedInfo::Game {
            serv_name: info.serv_name,
            cross_plat: info.cross_plat,
            addr: info.addr,
            open_time: info.open_time,
        };
        self.went_online(key, &online, now, out, handler);
    }

    pub(super) fn on_cross_info(
        &mut self,
        conn: ConnId,
        info: CrossInfo<'_>,
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) {
        let key = self.sessions[conn].key;
        if info.id != key.node_id {
            let why = format_args!("CROSS_INFO id {} differs from node_id", info.id);
            return self.protocol_error(conn, &why, now, out, handler);
        }
        if info.cross_server_id == 0 {
            // 0 means "none" in GAME_INFO: game nodes told it would read it as no assignment.
            let why =
                "CROSS_INFO cross_server_id 0 (0 means none; a cross node needs a non-zero id)";
            return self.protocol_error(conn, &why, now, out, handler);
        }
        let Ok(plat) = self.alloc.platforms.intern(info.cross_plat) else {
            return self.platforms_full(conn, "CROSS_INFO", info.cross_plat, now, out, handler);
        };
        if let Some(&other) = self.cross_conns.get(&info.cross_server_id) {
            // Two live processes claiming one cross_server_id: the newer one wins, as a
            // duplicate login would.
            warn!(
                "{key}: cross_server_id {} is already served by {}; replacing it",
                info.cross_server_id, self.sessions[other].key
            );
            self.kick(other, KickReason::Replaced, now, out, handler);
        }
        let s = &mut self.sessions[conn];
        s.phase = Phase::Online;
        s.online_ms = now.mono_ms;
        s.info = NodeDetails::Cross {
            cross_server_id: info.cross_server_id,
        };
        info!(
            "{key} ({}) online: plat \"{}\" cross_server_id {} cross_node_name \"{}\" cross_plat \"{}\" capacity {} lists {} servers",
            Peer(s.peer),
            Escaped(s.auth_plat.as_deref().unwrap_or("")),
            info.cross_server_id,
            Escaped(info.cross_node_name),
            Escaped(info.cross_plat),
            info.capacity,
            info.game_server_list.len()
        );
        self.cross_conns.insert(info.cross_server_id, conn);
        self.stats.online_cross += 1;
        self.journal_cross_facts(&info);
        // Its first list goes out at once, whatever window an earlier connection left open.
        self.fold.reset(info.cross_server_id, &mut self.wheel);
        self.alloc.cross_online(
            info.cross_server_id,
            plat,
            info.cross_node_name,
            info.capacity,
            info.game_server_list.iter(),
        );
        let online = ReportedInfo::Cross {
            cross_server_id: info.cross_server_id,
            cross_node_name: info.cross_node_name,
            cross_plat: info.cross_plat,
            capacity: info.capacity,
        };
        self.went_online(key, &online, now, out, handler);
    }

    /// The tail of every INFO: announce the allocator's changes, then tell the handler.
    fn went_online(
        &mut self,
        key: NodeKey,
        info: &ReportedInfo<'_>,
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) {
        self.announce(out);
        let panicked = handler_guard::catch(|| {
            let mut ctx = self.context(out, now.mono_ms);
            handler.node_online(&mut ctx, key, info);
        });
        if let Some(why) = panicked {
            self.handler_panicked(format_args!("node_online of {key}"), &why);
        }
    }

    /// A new cross_plat that the platform table has no room for: a protocol error that says so.
    fn platforms_full(
        &mut self,
        conn: ConnId,
        frame: &str,
        cross_plat: &str,
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) {
        let why = format_args!(
            "{frame}: new cross_plat {:?} refused: the platform table is full ({} names or {} bytes)",
            Clip(cross_plat),
            alloc::MAX_PLATFORMS,
            alloc::MAX_PLATFORM_BYTES
        );
        self.protocol_error(conn, &why, now, out, handler);
    }
}
