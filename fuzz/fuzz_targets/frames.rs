//! The frame decoder fed arbitrary bytes in arbitrary chunkings: decoding incrementally (as
//! the reactor does, a partial frame carried between reads) must find exactly the frames,
//! and the same error, as decoding the whole input at once. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use login_node::proto::{parse_frame, FrameError};

#[derive(Debug, PartialEq)]
enum End {
    Clean,
    Error(FrameError),
}

/// Decodes every frame of `data`; returns the payloads and how it ended.
fn whole(data: &[u8], max: usize) -> (Vec<Vec<u8>>, End) {
    let mut at = 0;
    let mut out = Vec::new();
    loop {
        match parse_frame(&data[at..], max) {
            Ok(Some((payload, used))) => {
                assert!(used >= 2 && used <= data.len() - at);
                out.push(payload.to_vec());
                at += used;
            }
            Ok(None) => return (out, End::Clean),
            Err(e) => return (out, End::Error(e)),
        }
    }
}

/// The same, arriving in chunks whose sizes come from `sizes`.
fn chunked(data: &[u8], sizes: &[u8], max: usize) -> (Vec<Vec<u8>>, End) {
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < data.len() {
        let n = (sizes.get(i % sizes.len().max(1)).copied().unwrap_or(7) as usize % 64 + 1)
            .min(data.len() - at);
        i += 1;
        buf.extend_from_slice(&data[at..at + n]);
        at += n;
        loop {
            match parse_frame(&buf, max) {
                Ok(Some((payload, used))) => {
                    out.push(payload.to_vec());
                    buf.drain(..used);
                }
                Ok(None) => break,
                Err(e) => return (out, End::Error(e)),
            }
        }
        // Memory stays bounded by one frame: a partial frame is never longer than max + 2.
        assert!(buf.len() <= max + 2);
    }
    (out, End::Clean)
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 3 {
        return;
    }
    let max = 16 + (u16::from_be_bytes([input[0], input[1]]) as usize % (65_535 - 16 + 1));
    let split = (input[2] as usize).min(input.len() - 3);
    let (sizes, data) = input[3..].split_at(split);
    assert_eq!(whole(data, max), chunked(data, sizes, max));
});
