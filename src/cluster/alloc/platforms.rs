//! Platform names interned to small ids, with bounds on how many and how many bytes: records
//! keep platforms for good, so this table is bounded instead of freed. Separate because it
//! knows nothing of records or ranking.

use super::PlatId;
use hashbrown::HashMap;
use std::sync::Arc;

/// Distinct cross platforms interned at most. Records refer to them for good (an assignment
/// outlives every connection), so their number and size are bounded instead of freed.
pub const MAX_PLATFORMS: usize = 65_536;
/// Bytes of platform names interned at most (each name counted with a 32-byte overhead).
pub const MAX_PLATFORM_BYTES: usize = 4 << 20;

/// The platform table is full: a new cross_plat is refused (a clear protocol error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformsFull;

/// Platform names interned to small ids, so records hold 4 bytes instead of a string. Each
/// name is stored once (the id map and the id-to-name list share it).
#[derive(Default)]
pub struct Platforms {
    ids: HashMap<Arc<str>, PlatId>,
    names: Vec<Arc<str>>,
    bytes: usize,
}

impl Platforms {
    /// The id of `name`, interning it on first sight; a new name past [`MAX_PLATFORMS`] or
    /// [`MAX_PLATFORM_BYTES`] is refused.
    pub fn intern(&mut self, name: &str) -> Result<PlatId, PlatformsFull> {
        if let Some(id) = self.ids.get(name) {
            return Ok(*id);
        }
        let cost = name.len() + 32;
        if self.names.len() >= MAX_PLATFORMS || self.bytes + cost > MAX_PLATFORM_BYTES {
            return Err(PlatformsFull);
        }
        self.bytes += cost;
        let id = self.names.len() as PlatId;
        let name: Arc<str> = Arc::from(name);
        self.names.push(Arc::clone(&name));
        self.ids.insert(name, id);
        Ok(id)
    }

    /// The id of `name` if it was ever interned.
    pub fn get(&self, name: &str) -> Option<PlatId> {
        self.ids.get(name).copied()
    }

    /// The name of an interned id ("" for an unknown id).
    pub fn name(&self, id: PlatId) -> &str {
        self.names.get(id as usize).map_or("", |s| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_names_are_stored_once_and_bounded() {
        let mut p = Platforms::default();
        let a = p.intern("p1").expect("room");
        assert_eq!(p.intern("p1"), Ok(a), "known names are found, not added");
        assert!(Arc::ptr_eq(
            &p.names[a as usize],
            p.ids.get_key_value("p1").expect("in").0
        ));
        let big = "b".repeat(60_000);
        let mut added = 0;
        while p.intern(&format!("{added}{big}")).is_ok() {
            added += 1;
        }
        assert!(p.bytes <= MAX_PLATFORM_BYTES);
        assert_eq!(
            added,
            (MAX_PLATFORM_BYTES - 34) / 60_033,
            "refused once full"
        );
        assert_eq!(p.intern("p1"), Ok(a), "known names still work when full");
    }
}
