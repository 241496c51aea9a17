//! Frames that many connections get the same copy of: a whitelist change's deltas (every
//! online game node) and the whitelist snapshot (every game node that comes online until the
//! next change). Encoded once into a reference-counted [`Bytes`]; write queues keep
//! references, so memory does not grow with the number of nodes.

use crate::proto::{self, WhitelistSnapshot};
use bytes::Bytes;

/// Whole frames in a buffer of whole frames.
pub fn count_frames(mut bytes: &[u8]) -> u64 {
    let mut n = 0;
    // The shared frame parser reads the headers; these are our own frames, so it only stops
    // at the end.
    while let Ok(Some((_, used))) = proto::parse_frame(bytes, proto::MAX_PAYLOAD) {
        bytes = &bytes[used..];
        n += 1;
    }
    n
}

/// A snapshot at least this large is queued shared; a smaller one is copied (it goes out with
/// the node's other welcome frames in one write).
pub const SHARE_SNAPSHOT_FROM: usize = 64 * 1024;

/// The encoded WHITELIST_SNAPSHOT of one whitelist version, kept until the version changes.
#[derive(Debug, Default)]
pub struct SnapshotCache {
    /// (version, its frames, how many).
    current: Option<(u32, Bytes, u64)>,
}

impl SnapshotCache {
    /// The snapshot frames of `version`, encoding `entries` only if this version is not cached.
    pub fn get<'e>(
        &mut self,
        version: u32,
        entries: impl IntoIterator<Item = &'e str>,
    ) -> (&Bytes, u64) {
        if matches!(&self.current, Some((v, _, _)) if *v != version) {
            self.current = None;
        }
        let (_, bytes, frames) = self.current.get_or_insert_with(|| {
            let mut out = Vec::new();
            let frames = WhitelistSnapshot::encode_split(version, entries, &mut out);
            (version, Bytes::from(out), frames as u64)
        });
        (bytes, *frames)
    }

    /// Forgets the cached snapshot (the entries changed without a new version: a restore).
    pub fn clear(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_encoded_once() {
        let mut cache = SnapshotCache::default();
        let entries = ["a", "b"];
        let (first, n) = cache.get(3, entries);
        let (first, n) = (first.clone(), n);
        assert_eq!(n, 1);
        assert_eq!(count_frames(&first), 1);
        let (again, _) = cache.get(3, ["ignored"]);
        assert_eq!(
            again.as_ptr(),
            first.as_ptr(),
            "the same buffer, not re-encoded"
        );
        let (next, _) = cache.get(4, ["c"]);
        assert_ne!(next.as_ptr(), first.as_ptr());
    }
}
