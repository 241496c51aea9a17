pub mod proto;
pub mod timer;
pub mod cluster;
pub mod config;
