//! login-node: a login node for game-server clusters, as a library and a binary.
//!
//! Game (logic) nodes and cross-server nodes connect over TCP with 2-byte length-prefixed
//! frames (protocol v1, `docs/PROTOCOL.md`), authenticate with
//! `md5(decimal(node_id) ++ decimal(time) ++ token)`, heartbeat, and every game node is assigned
//! the cross node of its platform with the most free slots.
//!
//! The data path follows the modules:
//!
//! ```text
//! socket ──► reactor ──► proto::frame ──► proto::message ──► cluster ──► Outbox ──► reactor ──► socket
//!            (mio loop)   (split bytes)    (typed values)    (registry,   (frames to
//!                                                             allocator,   send, closes)
//!                                                             timer wheel)
//! ```
//!
//! - [`proto`]: bytes in, values out; no I/O.
//! - [`cluster`]: the logic, sans-IO: events in with `now`, decisions out through an [`cluster::Outbox`].
//! - [`timer`]: the hierarchical timer wheel behind every deadline.
//! - [`state`]: the durable state (journal, snapshot, replay).
//! - [`admin`]: the admin HTTP API and metrics, sans-IO.
//! - [`reactor`]: the single-threaded mio poll loop, [`reactor::LoginNode`] and its
//!   [`reactor::Builder`].
//! - [`config`]: defaults, TOML file and flags.
//! - [`net`]: address blocks (`Cidr`), below both the config and the cluster.
//! - [`client`]: clients for Rust nodes: blocking, sans-IO ([`client::machine`]) and
//!   reconnecting ([`client::node`]).
//!
//! `docs/ARCHITECTURE.md` draws the whole data path.
//!
//! Embedding, with no async runtime:
//!
//! ```no_run
//! use login_node::{config::Config, reactor::LoginNode};
//!
//! let config = Config { token: "s3cret".into(), ..Config::default() };
//! let mut node = LoginNode::bind(config)?;
//! let stop = node.shutdown_handle(); // Send + Clone: call stop.shutdown() from any thread
//! # stop.shutdown();
//! node.run()?; // returns after shutdown: every node got KICK 4
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(missing_docs)]

pub mod admin;
pub mod client;
pub mod cluster;
pub mod config;
pub mod logging;
pub mod net;
pub mod proto;
pub mod reactor;
pub mod state;
pub mod timer;

pub use cluster::{Context, Handler, NoHandler, NodeKey, ReportedInfo};
pub use config::Config;
pub use reactor::{Builder, LoginNode, ShutdownHandle};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
