//! Journal and snapshot replay of arbitrary bytes: a scan returns records, a torn tail or a
//! corruption error with an offset inside the file, never a panic; replaying the records
//! twice gives the same state; a state's snapshot replays to the same state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use login_node::state::record::{scan, JOURNAL_MAGIC, SNAPSHOT_MAGIC};
use login_node::state::State;

fuzz_target!(|data: &[u8]| {
    for magic in [JOURNAL_MAGIC, SNAPSHOT_MAGIC] {
        // Half the inputs get a valid magic, so the fuzzer reaches the records.
        let mut file = Vec::with_capacity(data.len() + 8);
        if data.first().is_some_and(|b| b & 1 == 0) {
            file.extend_from_slice(magic);
        }
        file.extend_from_slice(data);
        match scan(&file, magic) {
            Ok(s) => {
                assert!(s.valid_len as usize <= file.len());
                assert!(s.torn_at.is_none_or(|t| t as usize <= file.len()));
                let mut once = State::default();
                s.records.iter().for_each(|r| once.apply(r));
                let mut twice = once.clone();
                s.records.iter().for_each(|r| twice.apply(r));
                assert_eq!(once, twice);
                let _ = once.check();
                let mut snap = SNAPSHOT_MAGIC.to_vec();
                once.encode_snapshot(&mut snap);
                let back = scan(&snap, SNAPSHOT_MAGIC).expect("own snapshot scans");
                assert!(back.torn_at.is_none());
            }
            Err(c) => assert!(c.offset as usize <= file.len()),
        }
    }
});
