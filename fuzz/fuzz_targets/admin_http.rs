//! The admin API's request parser, then the routes, on arbitrary bytes: a request, "need more"
//! or an error, never a panic; what a parsed request consumed lies within the input; routing
//! it against a live cluster answers with a status and a JSON (or metrics) body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use login_node::admin::api::{self, Api};
use login_node::admin::http::parse_request;
use login_node::admin::metrics::IoStats;
use login_node::cluster::{Cluster, ConnId, NoHandler, Now, Outbox};
use login_node::Config;

struct Nowhere;

impl Outbox for Nowhere {
    fn send(&mut self, _conn: ConnId, _frame: &[u8]) {}
    fn close(&mut self, _conn: ConnId) {}
}

fuzz_target!(|data: &[u8]| {
    let mut at = 0;
    let now = Now {
        mono_ms: 0,
        unix_secs: 1_700_000_000,
    };
    let config = Config {
        admin_token: "t".into(),
        ..Config::default()
    };
    let mut cluster = Cluster::new(&config, now);
    let io = IoStats::default();
    // Pipelined requests, as a keep-alive connection would deliver them.
    while at < data.len() {
        match parse_request(&data[at..]) {
            Ok(Some((req, used))) => {
                assert!(used > 0 && used <= data.len() - at);
                at += used;
                let outcome = api::handle(
                    &req,
                    &mut Api {
                        cluster: &mut cluster,
                        out: &mut Nowhere,
                        handler: &mut NoHandler,
                        now,
                        admin_token: "t",
                        viewer_token: Some("v"),
                        audit_log: None,
                        io: &io,
                        peer: "127.0.0.1:1".parse().expect("addr"),
                    },
                );
                assert!((200..600).contains(&outcome.response.status));
                // Whatever was journaled is made "durable" at once, as a sync would.
                if !cluster.pending_journal().is_empty() {
                    cluster.journal_synced(&mut Nowhere);
                }
            }
            Ok(None) | Err(_) => return,
        }
    }
});
