//! The admin surface: an HTTP/1.1 API for operators and Prometheus metrics, served by the
//! reactor on its own listener in the same poll loop.
//!
//! - [`http`]: request parsing and response writing over bytes.
//! - [`api`]: the routes, over the cluster (sans-IO).
//! - [`servers`]: a platform's game servers as server lists show them.
//! - [`public`]: the players' server list, rendered once per change and cached (sans-IO).
//! - [`metrics`]: counters, histograms and the text format.
//! - [`console`]: the operator console's static files.
//! - [`audit`]: the audit log's recent lines.
//! - [`nodes_page`]: `GET /api/nodes` paged and searched.
//!
//! The endpoints, with curl examples, are in `docs/ADMIN.md`.

pub mod api;
pub mod audit;
pub mod console;
pub mod http;
pub mod metrics;
pub mod nodes_page;
pub mod public;
pub mod servers;
