//! Framing (contract section 1): `len: u16` big-endian, then `len` payload bytes; the payload
//! starts with `cmd: u16`. Parsing is a plain function over a byte slice so the reactor can
//! decode every complete frame in place in its read buffer and keep only a partial tail.

use std::fmt;

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 2;
/// The largest payload the format can express (and the default `max_frame`).
pub const MAX_PAYLOAD: usize = u16::MAX as usize;

/// A framing violation, detected from the 2-byte header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// `len < 2`: the payload cannot hold a command.
    TooShort {
        /// The declared length.
        len: usize,
    },
    /// `len` exceeds the configured `max_frame`.
    TooLong {
        /// The declared length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooShort { len } => write!(f, "frame length {len} < 2"),
            FrameError::TooLong { len, max } => write!(f, "frame length {len} > max_frame {max}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Looks at the start of `buf`. Returns the payload (cmd + body) of the first frame and the
/// bytes it occupies, `Ok(None)` when more bytes are needed, or an error as soon as the header
/// is invalid (without waiting for a body that will never be accepted).
#[inline]
pub fn parse_frame(buf: &[u8], max_frame: usize) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = u16::from_be_bytes([header[0], header[1]]) as usize;
    if len < 2 {
        return Err(FrameError::TooShort { len });
    }
    if len > max_frame {
        return Err(FrameError::TooLong {
            len,
            max: max_frame,
        });
    }
    match buf.get(HEADER_LEN..HEADER_LEN + len) {
        Some(payload) => Ok(Some((payload, HEADER_LEN + len))),
        None => Ok(None),
    }
}

/// Splits a payload into its command and body. The payload of a parsed frame always holds at
/// least the two command bytes; a shorter slice yields command 0, which no phase accepts.
#[inline]
pub fn split_payload(payload: &[u8]) -> (u16, &[u8]) {
    match payload {
        [hi, lo, body @ ..] => (u16::from_be_bytes([*hi, *lo]), body),
        _ => (0, &[]),
    }
}

/// The payload would exceed 65,535 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTooLarge;

impl fmt::Display for FrameTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("payload exceeds 65535 bytes")
    }
}

impl std::error::Error for FrameTooLarge {}

/// The one place that writes a frame header: the length (cmd included), then the command.
#[inline]
fn put_header(out: &mut Vec<u8>, len: u16, cmd: u16) {
    // One 4-byte append, not two: the HEARTBEAT_ACK is written through here on every beat.
    let ([l0, l1], [c0, c1]) = (len.to_be_bytes(), cmd.to_be_bytes());
    out.extend_from_slice(&[l0, l1, c0, c1]);
}

/// Starts a frame for `cmd` at the end of `out`; returns where it starts, for [`end_frame`].
#[inline]
pub fn begin_frame(out: &mut Vec<u8>, cmd: u16) -> usize {
    let start = out.len();
    put_header(out, 0, cmd);
    start
}

/// Appends a whole frame for `cmd` whose body has the fixed size `N` (checked at compile time
/// to fit), so the length is written up front and the encoder cannot fail.
#[inline]
pub fn put_fixed_frame<const N: usize>(out: &mut Vec<u8>, cmd: u16, body: [u8; N]) {
    const { assert!(N + 2 <= MAX_PAYLOAD, "a fixed body must fit in one frame") };
    put_header(out, (N + 2) as u16, cmd);
    out.extend_from_slice(&body);
}

/// Writes the length of the frame begun at `start`. On overflow the partial frame is removed,
/// leaving `out` as it was before [`begin_frame`].
#[inline]
pub fn end_frame(out: &mut Vec<u8>, start: usize) -> Result<(), FrameTooLarge> {
    let len = out.len() - start - HEADER_LEN;
    if len > MAX_PAYLOAD {
        out.truncate(start);
        return Err(FrameTooLarge);
    }
    out[start..start + HEADER_LEN].copy_from_slice(&(len as u16).to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_a_whole_header_and_body() {
        assert_eq!(parse_frame(&[], 100), Ok(None));
        assert_eq!(parse_frame(&[0], 100), Ok(None));
        assert_eq!(parse_frame(&[0, 3, 0, 4], 100), Ok(None));
        assert_eq!(
            parse_frame(&[0, 3, 0, 4, 7, 99], 100),
            Ok(Some((&[0u8, 4, 7][..], 5)))
        );
    }

    #[test]
    fn header_errors_come_before_the_body() {
        assert_eq!(
            parse_frame(&[0, 0], 100),
            Err(FrameError::TooShort { len: 0 })
        );
        assert_eq!(
            parse_frame(&[0, 1], 100),
            Err(FrameError::TooShort { len: 1 })
        );
        assert_eq!(
            parse_frame(&[0xff, 0xff], 100),
            Err(FrameError::TooLong {
                len: 65535,
                max: 100
            })
        );
    }

    #[test]
    fn end_frame_patches_the_length_or_rolls_back() {
        let mut out = vec![9];
        let start = begin_frame(&mut out, 0x8004);
        out.extend_from_slice(&[1, 2]);
        assert_eq!(end_frame(&mut out, start), Ok(()));
        assert_eq!(out, [9, 0, 4, 0x80, 0x04, 1, 2]);

        let start = begin_frame(&mut out, 1);
        out.resize(out.len() + MAX_PAYLOAD, 0);
        assert_eq!(end_frame(&mut out, start), Err(FrameTooLarge));
        assert_eq!(out, [9, 0, 4, 0x80, 0x04, 1, 2]);
    }

    #[test]
    fn a_fixed_frame_is_the_same_bytes_as_a_begun_and_ended_one() {
        let mut fixed = vec![9];
        put_fixed_frame(&mut fixed, 0x80ff, [3]);
        assert_eq!(fixed, [9, 0, 3, 0x80, 0xff, 3]);
        let mut built = vec![9];
        let start = begin_frame(&mut built, 0x80ff);
        built.push(3);
        assert_eq!(end_frame(&mut built, start), Ok(()));
        assert_eq!(built, fixed);
    }

    #[test]
    fn split_payload_reads_the_command() {
        assert_eq!(split_payload(&[0x80, 0xff, 5]), (0x80ff, &[5u8][..]));
        assert_eq!(split_payload(&[1]), (0, &[][..]));
    }
}
