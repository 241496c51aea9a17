//! Protocol v1 (`../shared/protocol-v1.md`): bytes in, values out. No I/O, no clock.
//!
//! Data path: [`frame`] splits a byte stream into payloads (and is the one place that writes a
//! frame header), [`message`] turns a payload into a typed message (and back), [`wire`] reads
//! and writes the fields, [`auth`] checks the AUTH signature.

pub mod auth;
pub mod frame;
pub mod message;
pub mod wire;

pub use frame::{parse_frame, split_payload, FrameError, FrameTooLarge, HEADER_LEN, MAX_PAYLOAD};
pub use message::*;
pub use wire::DecodeError;
