//! Every message decoder on arbitrary payloads: an error or a value, never a panic; a value
//! encodes back to a frame that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use login_node::proto::{parse_frame, Message};

fuzz_target!(|payload: &[u8]| {
    let Ok(msg) = Message::decode(payload) else {
        return;
    };
    let mut out = Vec::new();
    if msg.encode(&mut out).is_err() {
        return; // a value too large for one frame (cannot come from a valid frame's body)
    }
    let (again, used) = parse_frame(&out, 65_535)
        .expect("an encoded message is a valid frame")
        .expect("whole");
    assert_eq!(used, out.len());
    assert_eq!(Message::decode(again).expect("decodes"), msg);
});
