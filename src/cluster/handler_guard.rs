//! The panic policy for embedder handlers: a panic inside a [`super::Handler`] call is caught
//! at that call, logged with what the handler was handling, counted
//! (`login_node_handler_panics_total`), and the loop keeps serving. One buggy command must not
//! drop every node without KICK 4; the event that panicked is simply not handled further.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs one handler call; returns the panic's message if it panicked.
///
/// `AssertUnwindSafe` is sound here in the sense that matters: the closure only calls the
/// handler with a [`super::Context`], whose effects are whole frames queued to the outbox and
/// whole timer-wheel inserts, so the cluster's own state is consistent whenever the handler
/// unwinds. The handler's own state may be half-updated; that is the embedder's to judge
/// (docs say so).
pub(super) fn catch(call: impl FnOnce()) -> Option<String> {
    catch_unwind(AssertUnwindSafe(call))
        .err()
        .map(|payload| message(&*payload))
}

fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a non-string panic payload)".to_string()
    }
}
