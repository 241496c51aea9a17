//! The AUTH step: the contract's check order (address, well-formed, signature, time window,
//! role, duplicate, capacity), AUTH_RESULT, and the refusals counted against an address or an
//! identity by the admission throttle.

use super::handler::Handler;
use super::session::Phase;
use super::{admission, Cluster, ConnId, NodeKey, Now, Outbox, Role, Timer};
use crate::config::DuplicatePolicy;
use crate::logging::{Escaped, Peer};
use crate::proto::{self, AuthCode, AuthResult, KickReason, NodeType};
use log::{debug, info, warn};
use std::fmt;
use std::net::SocketAddr;

impl Cluster {
    fn throttle_window_secs(&self) -> u64 {
        self.throttle_window_ms / 1000
    }

    /// Whether a connection from `peer` may be opened at all: false while its address is
    /// blocked for failing AUTH too often (the reactor then closes it without a word).
    pub fn admits(&mut self, peer: SocketAddr, now: Now) -> bool {
        if self.throttle.is_blocked(peer.ip(), now.mono_ms) {
            self.stats.connections_throttled += 1;
            return false;
        }
        true
    }

    fn auth_result(&mut self, conn: ConnId, code: AuthCode, now: Now, out: &mut dyn Outbox) {
        self.stats.auth_results[(code as usize).min(7)] += 1;
        self.scratch.clear();
        AuthResult {
            code: code as u8,
            server_time: now.unix_secs.min(u32::MAX as u64) as u32,
            heartbeat_interval: self.heartbeat_interval,
            heartbeat_timeout: self.heartbeat_timeout,
        }
        .encode(&mut self.scratch);
        out.send(conn, &self.scratch);
    }

    /// Fails an AUTH with `code`: AUTH_RESULT, then close.
    fn refuse(
        &mut self,
        conn: ConnId,
        code: AuthCode,
        who: &dyn fmt::Display,
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) {
        let peer = self.sessions[conn].peer;
        if let Some(suppressed) = self.fail_log.take(now.mono_ms) {
            let more = if suppressed > 0 {
                format!(" ({suppressed} more refusals not logged)")
            } else {
                String::new()
            };
            warn!(
                "conn {conn} from {}: AUTH {who} refused: code {} ({}){more}",
                Peer(peer),
                code as u8,
                code.describe()
            );
        }
        let counts = matches!(
            code,
            AuthCode::BadSignature
                | AuthCode::BadTime
                | AuthCode::AddressNotAllowed
                | AuthCode::BadRequest
        );
        if counts && self.throttle.fail(peer.ip(), now.mono_ms) == admission::Failure::Blocked {
            self.stats.addresses_blocked += 1;
            warn!(
                "{}: too many failed AUTHs; its connections are refused for up to {} s",
                peer.ip(),
                self.throttle_window_secs()
            );
        }
        self.auth_result(conn, code, now, out);
        out.close(conn);
        self.end_session(conn, "AUTH refused", now, out, handler);
    }

    /// Counts a bad signature or time against the identity the AUTH claimed.
    fn identity_failed(&mut self, claimed: admission::Identity, key: &NodeKey, now: Now) {
        if self.throttle.fail_identity(claimed, now.mono_ms) == admission::Failure::IdentityBlocked
        {
            self.stats.identities_blocked += 1;
            warn!(
                "{key} from {}: too many failed AUTHs; its AUTHs are closed unanswered for up to {} s",
                claimed.ip,
                self.throttle_window_secs()
            );
        }
    }

    pub(super) fn on_auth(
        &mut self,
        conn: ConnId,
        auth: Result<proto::Auth<'_>, proto::DecodeError>,
        now: Now,
        out: &mut dyn Outbox,
        handler: &mut dyn Handler,
    ) {
        // Check order is the contract's: address (4, looked up at accept), well-formed (6),
        // signature (1), time window (2), duplicate (3), capacity (5).
        if !self.sessions[conn].allowed {
            let who = format_args!("(address not on the allowlist)");
            return self.refuse(conn, AuthCode::AddressNotAllowed, &who, now, out, handler);
        }
        let auth = match auth {
            Ok(a) => a,
            Err(e) => {
                return self.refuse(
                    conn,
                    AuthCode::BadRequest,
                    &format_args!("(malformed: {e})"),
                    now,
                    out,
                    handler,
                )
            }
        };
        let Some(node_type) = NodeType::from_u8(auth.node_type) else {
            let who = format_args!("(unknown node_type {})", auth.node_type);
            return self.refuse(conn, AuthCode::BadRequest, &who, now, out, handler);
        };
        let key = NodeKey {
            node_type,
            node_id: auth.node_id,
        };
        let claimed = admission::Identity {
            ip: self.sessions[conn].peer.ip(),
            node_type: auth.node_type,
            node_id: auth.node_id,
        };
        if self.throttle.identity_blocked(&claimed, now.mono_ms) {
            // Told nothing new, and no signature is checked: closed without a word.
            self.stats.connections_throttled += 1;
            out.close(conn);
            return self.end_session(conn, "AUTH throttled", now, out, handler);
        }
        if !proto::auth::verify(auth.node_id, auth.time, &auth.sign, &self.tokens) {
            self.identity_failed(claimed, &key, now);
            return self.refuse(conn, AuthCode::BadSignature, &key, now, out, handler);
        }
        if (auth.time as u64).abs_diff(now.unix_secs) > self.auth_window {
            self.identity_failed(claimed, &key, now);
            return self.refuse(
                conn,
                AuthCode::BadTime,
                &format_args!("{key} (time {})", auth.time),
                now,
                out,
                handler,
            );
        }
        if let Role::Standby { active } = &self.role {
            let active = active.as_deref().unwrap_or("unknown").to_string();
            let who = format_args!("{key} (standby; the active member is {active})");
            return self.refuse(conn, AuthCode::Standby, &who, now, out, handler);
        }
        let existing = self.registry.get(&key).copied();
        if existing.is_some() && self.duplicate_policy == DuplicatePolicy::Reject {
            return self.refuse(conn, AuthCode::Duplicate, &key, now, out, handler);
        }
        if existing.is_none() && self.open_connections > self.max_connections {
            return self.refuse(conn, AuthCode::ServerFull, &key, now, out, handler);
        }
        if let Some(old) = existing {
            info!(
                "{key}: new login from {} replaces the one from {}",
                Peer(self.sessions[conn].peer),
                Peer(self.sessions[old].peer)
            );
            self.kick(old, KickReason::Replaced, now, out, handler);
        }
        let plat = self.auth_plats.get(auth.plat);
        self.registry.insert(key, conn);
        let deadline = now.mono_ms + self.heartbeat_timeout_ms;
        let s = &mut self.sessions[conn];
        s.phase = Phase::AwaitInfo;
        s.key = key;
        s.auth_plat = Some(plat);
        s.last_heard_ms = now.mono_ms;
        s.heartbeat_timeout_ms = self.heartbeat_timeout_ms;
        match s.timer {
            Some(t) => {
                self.wheel.reschedule(t, deadline);
            }
            None => s.timer = Some(self.wheel.insert(deadline, Timer::Session(conn))),
        }
        debug!(
            "{key} from {}: authenticated (plat \"{}\")",
            Peer(s.peer),
            Escaped(auth.plat)
        );
        self.auth_result(conn, AuthCode::Ok, now, out);
    }
}
