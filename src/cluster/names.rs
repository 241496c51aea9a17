//! Peer-supplied names held while something refers to them: each distinct name is stored
//! once, shared by every session that sent it, and freed with the last of them (a peer that
//! sends ever-new names costs only while its connections are open).

use hashbrown::HashSet;
use std::sync::Arc;

/// A pool of shared names (the AUTH `plat` of sessions).
#[derive(Debug, Default)]
pub struct NamePool {
    names: HashSet<Arc<str>>,
}

impl NamePool {
    /// A handle to `name`, shared with every other holder of the same name.
    pub fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(held) = self.names.get(name) {
            return Arc::clone(held);
        }
        let held: Arc<str> = Arc::from(name);
        self.names.insert(Arc::clone(&held));
        held
    }

    /// Gives a handle back; the name is freed when no other holder is left.
    pub fn release(&mut self, name: Arc<str>) {
        // The pool's own reference and this one: nobody else holds it.
        if Arc::strong_count(&name) == 2 {
            self.names.remove(&*name);
        }
    }

    /// Distinct names held now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no name is held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_stored_once_and_freed_with_its_last_holder() {
        let mut pool = NamePool::default();
        let a = pool.get("dev");
        let b = pool.get("dev");
        assert!(Arc::ptr_eq(&a, &b), "stored once");
        let other = pool.get("prod");
        assert_eq!(pool.len(), 2);
        pool.release(a);
        assert_eq!(pool.len(), 2, "b still holds dev");
        pool.release(b);
        assert_eq!(pool.len(), 1);
        pool.release(other);
        assert!(pool.is_empty());
    }
}
