//! An embedded login node with a handler that relays a custom command between a game node
//! and its cross node: 0x1001 from a game node goes to the cross node serving it (body
//! prefixed with the game's serv_id), and 0x1002 from a cross node goes to the game node
//! named in its first four bytes (if that game node is one of its members).
//!
//!     cargo run --example relay -- 127.0.0.1:7700 my-token
//!
//! `tests/example_relay.rs` runs this handler against real nodes.

use login_node::proto::NodeType;
use login_node::{Context, Handler, LoginNode, NodeKey, ReportedInfo};

/// Game -> cross: a game node asks its cross node something.
pub const TO_CROSS: u16 = 0x1001;
/// Cross -> game: a cross node answers one of its game nodes.
pub const TO_GAME: u16 = 0x1002;

/// The relay handler; counts what it relayed.
#[derive(Debug, Default)]
pub struct Relay {
    /// Frames relayed so far.
    pub relayed: u64,
}

impl Handler for Relay {
    fn node_online(&mut self, _ctx: &mut Context<'_>, node: NodeKey, info: &ReportedInfo<'_>) {
        if let ReportedInfo::Game { serv_name, .. } = info {
            log::info!("relay: {node} ({serv_name}) can use {TO_CROSS:#06x}");
        }
    }

    fn app_command(&mut self, ctx: &mut Context<'_>, from: NodeKey, cmd: u16, body: &[u8]) {
        match (from.node_type, cmd) {
            (NodeType::Game, TO_CROSS) => {
                let Some(cross) = ctx.cross_of(from.node_id) else {
                    return; // not assigned yet, or its cross node is offline: dropped
                };
                let mut framed = from.node_id.to_be_bytes().to_vec();
                framed.extend_from_slice(body);
                if ctx.send(cross, TO_CROSS, &framed).is_ok() {
                    self.relayed += 1;
                }
            }
            (NodeType::Cross, TO_GAME) if body.len() >= 4 => {
                let serv = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                // Only to its own members.
                if ctx.cross_of(serv) != Some(from) {
                    return;
                }
                let game = NodeKey {
                    node_type: NodeType::Game,
                    node_id: serv,
                };
                if ctx.send(game, TO_GAME, &body[4..]).is_ok() {
                    self.relayed += 1;
                }
            }
            _ => {}
        }
    }
}

#[allow(dead_code)] // the test includes this file for `Relay` only
fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:7700".into());
    let token = args.next().unwrap_or_else(|| "dev-token-change-me".into());
    let _ = login_node::logging::init_stderr(log::LevelFilter::Info);
    let mut node = LoginNode::builder()
        .listen(
            listen
                .parse()
                .map_err(|_| std::io::Error::other(format!("{listen:?} is not an address")))?,
        )
        .token(token)
        .state_dir(None)
        .handler(Relay::default())
        .build()?;
    node.handle_signals()?;
    node.run()
}
