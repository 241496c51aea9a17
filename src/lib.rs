pub mod proto;
pub mod timer;
