//! A hierarchical hashed timer wheel: every deadline in the node (auth timeouts, heartbeat
//! expiry, embedder timers) lives here. No I/O and no clock: callers pass `now` in milliseconds.
//!
//! Layout: 11 levels of 64 slots cover the whole `u64` tick range. A level-`L` slot spans
//! `64^L` ticks. An entry sits at the level of the highest bit in which its deadline differs
//! from `elapsed`, so every occupied slot lies strictly ahead of the wheel's position and the
//! next slot to visit is the lowest set bit of the lowest non-empty level's `occupied` mask:
//! O(1) to find. Entries live in a slab and are linked into their slot's doubly linked list, so
//! insert and cancel are O(1) and, once the slab has grown, allocate nothing. When the wheel
//! reaches a slot of a higher level, its entries move down (cascade) until they fire.
//!
//! Deadlines are rounded up to whole ticks, so a timer never fires before its deadline; it fires
//! at most one tick plus the caller's polling delay after it.

use slab::Slab;

const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const LEVELS: usize = 11; // 11 * 6 = 66 bits >= 64
const NONE: u32 = u32::MAX;
/// List index of the expired list (after the LEVELS * SLOTS slot lists).
const EXPIRED: u16 = (LEVELS * SLOTS) as u16;

/// Identifies a scheduled timer until it fires or is cancelled. It carries a generation: once
/// its timer is gone, the id matches nothing, even after the slot holds another timer, so a
/// stale id cancels or moves nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId {
    key: u32,
    generation: u32,
}

struct Entry<T> {
    /// Which insert made this entry (matched against [`TimerId::generation`]).
    generation: u32,
    /// Deadline in ticks.
    deadline: u64,
    prev: u32,
    next: u32,
    /// Which list the entry is in: `level * SLOTS + slot`, or `EXPIRED`.
    list: u16,
    payload: T,
}

/// The wheel. `T` is what a timer carries back when it fires (a connection id, say).
pub struct TimerWheel<T> {
    tick_ms: u64,
    /// Ticks processed: every entry with `deadline <= elapsed` is on the expired list.
    elapsed: u64,
    occupied: [u64; LEVELS],
    heads: Box<[u32]>,
    expired_tail: u32,
    entries: Slab<Entry<T>>,
    /// The generation the next insert gets (wraps after 4 billion inserts; an id that old
    /// matching a new timer in the same slot is out of scope).
    next_generation: u32,
}

impl<T: Copy> TimerWheel<T> {
    /// A wheel with ticks of `tick_ms` milliseconds (at least 1), positioned at `now_ms`.
    pub fn new(tick_ms: u64, now_ms: u64) -> Self {
        let tick_ms = tick_ms.max(1);
        TimerWheel {
            tick_ms,
            elapsed: now_ms / tick_ms,
            occupied: [0; LEVELS],
            heads: vec![NONE; LEVELS * SLOTS + 1].into_boxed_slice(),
            expired_tail: NONE,
            entries: Slab::new(),
            next_generation: 0,
        }
    }

    /// Milliseconds per tick.
    pub fn tick_ms(&self) -> u64 {
        self.tick_ms
    }

    /// Number of scheduled (not yet returned) timers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no timer is scheduled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Reserves room for `additional` more timers, so scheduling them later does not allocate.
    pub fn reserve(&mut self, additional: usize) {
        self.entries.reserve(additional);
    }

    /// Schedules `payload` to fire at `deadline_ms` (or at the next poll if that has passed).
    pub fn insert(&mut self, deadline_ms: u64, payload: T) -> TimerId {
        let deadline = deadline_ms.div_ceil(self.tick_ms);
        let generation = self.next_generation;
        self.next_generation = generation.wrapping_add(1);
        let key = self.entries.insert(Entry {
            generation,
            deadline,
            prev: NONE,
            next: NONE,
            list: 0,
            payload,
        });
        // Slab keys are dense; a wheel holding 4 billion timers is out of scope.
        let key = u32::try_from(key).unwrap_or(NONE - 1);
        self.place(key);
        TimerId { key, generation }
    }

    /// The entry `id` names, if its timer is still scheduled.
    fn live(&self, id: TimerId) -> Option<&Entry<T>> {
        self.entries
            .get(id.key as usize)
            .filter(|e| e.generation == id.generation)
    }

    /// The payload of a scheduled timer.
    pub fn payload(&self, id: TimerId) -> Option<T> {
        self.live(id).map(|e| e.payload)
    }

    /// Cancels a timer; returns its payload if it was still scheduled. A stale id (its timer
    /// fired or was cancelled) cancels nothing.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        self.live(id)?;
        self.unlink(id.key);
        Some(self.entries.remove(id.key as usize).payload)
    }

    /// Moves a scheduled timer to a new deadline without reallocating; false if `id` is unknown
    /// or stale.
    pub fn reschedule(&mut self, id: TimerId, deadline_ms: u64) -> bool {
        let deadline = deadline_ms.div_ceil(self.tick_ms);
        if self.live(id).is_none() {
            return false;
        }
        self.entries[id.key as usize].deadline = deadline;
        self.unlink(id.key);
        self.place(id.key);
        true
    }

    /// The deadline (ms) of a scheduled timer.
    pub fn deadline_ms(&self, id: TimerId) -> Option<u64> {
        self.live(id).map(|e| e.deadline * self.tick_ms)
    }

    /// When the caller should next call [`Self::poll`]: a time in ms (possibly already past),
    /// or `None` when nothing is scheduled. This may be a cascade point before the first real
    /// deadline; polling then simply returns nothing.
    pub fn next_wakeup_ms(&self) -> Option<u64> {
        if self.heads[EXPIRED as usize] != NONE {
            return Some(self.elapsed * self.tick_ms);
        }
        self.next_slot().map(|(_, _, tick)| tick * self.tick_ms)
    }

    /// Returns one timer whose deadline is at or before `now_ms`, removing it, or `None`.
    /// Call until it returns `None` to drain everything due.
    pub fn poll(&mut self, now_ms: u64) -> Option<(TimerId, T)> {
        if self.heads[EXPIRED as usize] == NONE {
            self.advance(now_ms / self.tick_ms);
        }
        let key = self.heads[EXPIRED as usize];
        if key == NONE {
            return None;
        }
        self.unlink(key);
        let e = self.entries.remove(key as usize);
        Some((
            TimerId {
                key,
                generation: e.generation,
            },
            e.payload,
        ))
    }

    /// The lowest non-empty level's next slot: (level, slot, the tick the wheel reaches it).
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        for (level, &bits) in self.occupied.iter().enumerate() {
            if bits != 0 {
                let slot = bits.trailing_zeros() as usize;
                let shift = SLOT_BITS as usize * level;
                // Clear this level's digit and everything below it, then set the slot's digit.
                let span_mask = if shift + 6 >= 64 {
                    u64::MAX
                } else {
                    (1u64 << (shift + 6)) - 1
                };
                let tick = (self.elapsed & !span_mask) | ((slot as u64) << shift);
                return Some((level, slot, tick));
            }
        }
        None
    }

    /// Moves the wheel up to `now_tick`, cascading higher-level slots and collecting every
    /// entry due on the expired list.
    fn advance(&mut self, now_tick: u64) {
        while let Some((level, slot, tick)) = self.next_slot() {
            if tick > now_tick {
                break;
            }
            self.elapsed = tick;
            let list = level * SLOTS + slot;
            let mut key = self.heads[list];
            self.heads[list] = NONE;
            self.occupied[level] &= !(1u64 << slot);
            while key != NONE {
                let next = self.entries[key as usize].next;
                self.place(key);
                key = next;
            }
        }
        // Safe to jump: every remaining slot lies beyond now_tick (see the module docs).
        self.elapsed = self.elapsed.max(now_tick);
    }

    /// Links entry `key` (currently unlinked) into the list its deadline calls for.
    fn place(&mut self, key: u32) {
        let deadline = self.entries[key as usize].deadline;
        if deadline <= self.elapsed {
            self.push_expired(key);
            return;
        }
        let highest_diff_bit = 63 - (self.elapsed ^ deadline).leading_zeros();
        let level = (highest_diff_bit / SLOT_BITS) as usize;
        let slot = ((deadline >> (SLOT_BITS as usize * level)) & (SLOTS as u64 - 1)) as usize;
        let list = level * SLOTS + slot;
        let head = self.heads[list];
        {
            let e = &mut self.entries[key as usize];
            e.prev = NONE;
            e.next = head;
            e.list = list as u16;
        }
        if head != NONE {
            self.entries[head as usize].prev = key;
        }
        self.heads[list] = key;
        self.occupied[level] |= 1u64 << slot;
    }

    fn push_expired(&mut self, key: u32) {
        let tail = self.expired_tail;
        {
            let e = &mut self.entries[key as usize];
            e.prev = tail;
            e.next = NONE;
            e.list = EXPIRED;
        }
        if tail == NONE {
            self.heads[EXPIRED as usize] = key;
        } else {
            self.entries[tail as usize].next = key;
        }
        self.expired_tail = key;
    }

    fn unlink(&mut self, key: u32) {
        let (prev, next, list) = {
            let e = &self.entries[key as usize];
            (e.prev, e.next, e.list as usize)
        };
        if prev == NONE {
            self.heads[list] = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NONE {
            self.entries[next as usize].prev = prev;
        }
        if list == EXPIRED as usize {
            if self.expired_tail == key {
                self.expired_tail = prev;
            }
        } else if self.heads[list] == NONE {
            let (level, slot) = (list / SLOTS, list % SLOTS);
            self.occupied[level] &= !(1u64 << slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(w: &mut TimerWheel<u32>, now: u64) -> Vec<u32> {
        let mut out = Vec::new();
        while let Some((_, p)) = w.poll(now) {
            out.push(p);
        }
        out
    }

    #[test]
    fn fires_at_not_before_the_deadline() {
        let mut w = TimerWheel::new(10, 0);
        w.insert(1_000, 1);
        assert!(drain(&mut w, 999).is_empty());
        assert_eq!(drain(&mut w, 1_000), [1]);
        assert!(w.is_empty());
    }

    #[test]
    fn deadlines_round_up_to_the_tick() {
        let mut w = TimerWheel::new(10, 0);
        w.insert(1_001, 1);
        assert!(drain(&mut w, 1_009).is_empty());
        assert_eq!(drain(&mut w, 1_010), [1]);
    }

    #[test]
    fn past_deadlines_fire_on_the_next_poll() {
        let mut w = TimerWheel::new(10, 5_000);
        w.insert(10, 7);
        assert_eq!(w.next_wakeup_ms(), Some(5_000));
        assert_eq!(drain(&mut w, 5_000), [7]);
    }

    #[test]
    fn cancel_removes_from_slot_and_expired_lists() {
        let mut w = TimerWheel::new(1, 0);
        let a = w.insert(100, 1);
        let b = w.insert(100, 2);
        let c = w.insert(5_000_000, 3);
        assert_eq!(w.cancel(a), Some(1));
        assert_eq!(w.cancel(a), None);
        assert_eq!(w.cancel(c), Some(3));
        assert_eq!(drain(&mut w, 100), [2]);
        assert_eq!(w.cancel(b), None);
        // Cancel while on the expired list.
        let d = w.insert(150, 4);
        let e = w.insert(150, 5);
        w.advance(150);
        assert_eq!(w.cancel(d), Some(4));
        assert_eq!(drain(&mut w, 150), [5]);
        assert_eq!(w.cancel(e), None);
        assert_eq!(w.next_wakeup_ms(), None);
    }

    #[test]
    fn many_timers_fire_in_deadline_order_across_levels() {
        let mut w = TimerWheel::new(1, 0);
        // Deadlines spread over several levels, inserted in scrambled order.
        let deadlines: Vec<u64> = (0..2_000u64)
            .map(|i| (i * 7_919) % 2_000 * 97 + 1)
            .collect();
        for (i, d) in deadlines.iter().enumerate() {
            w.insert(*d, i as u32);
        }
        let mut fired = Vec::new();
        let mut now = 0;
        while !w.is_empty() {
            now = w.next_wakeup_ms().expect("timers remain").max(now);
            while let Some((_, p)) = w.poll(now) {
                assert!(deadlines[p as usize] <= now, "fired early");
                fired.push((now, deadlines[p as usize]));
            }
        }
        assert_eq!(fired.len(), 2_000);
        // Each fired exactly at its deadline when polled at every wake-up point.
        assert!(fired.iter().all(|(at, d)| at == d));
    }

    #[test]
    fn jumping_far_ahead_fires_everything_due() {
        let mut w = TimerWheel::new(1, 0);
        for d in [5u64, 64, 4_096, 262_144, 1 << 30] {
            w.insert(d, d as u32);
        }
        assert_eq!(drain(&mut w, 300_000).len(), 4);
        assert_eq!(drain(&mut w, (1 << 30) - 1).len(), 0);
        assert_eq!(drain(&mut w, 1 << 30), [1 << 30]);
    }

    #[test]
    fn wraps_around_slot_and_level_boundaries() {
        // Start just before several power-of-64 boundaries so deadlines cross them.
        for start in [63u64, 4_095, 262_143, (1 << 36) - 1, u64::MAX - 10_000] {
            let mut w = TimerWheel::new(1, start);
            for off in [1u64, 2, 64, 65, 4_097, 9_999] {
                w.insert(start + off, off as u32);
            }
            let mut got = Vec::new();
            for now in start..=start + 10_000 {
                while let Some((_, p)) = w.poll(now) {
                    assert_eq!(
                        start + p as u64,
                        now,
                        "start {start}: timer {p} fired at the wrong time"
                    );
                    got.push(p);
                }
            }
            assert_eq!(got, [1, 2, 64, 65, 4_097, 9_999], "start {start}");
        }
    }

    #[test]
    fn reschedule_moves_without_new_entries() {
        let mut w = TimerWheel::new(10, 0);
        let id = w.insert(1_000, 1);
        assert!(w.reschedule(id, 3_000));
        assert_eq!(w.deadline_ms(id), Some(3_000));
        assert!(drain(&mut w, 2_000).is_empty());
        assert_eq!(drain(&mut w, 3_000), [1]);
        assert!(!w.reschedule(id, 5));
    }

    #[test]
    fn reinserting_after_fire_reuses_the_slot() {
        let mut w = TimerWheel::new(10, 0);
        let a = w.insert(100, 1);
        assert_eq!(w.poll(100), Some((a, 1)));
        let b = w.insert(200, 2);
        assert_eq!(a.key, b.key, "slab slot reused: no allocation on refresh");
        assert_ne!(a, b, "but not the id");
    }

    #[test]
    fn a_stale_id_cancels_and_moves_nothing() {
        let mut w = TimerWheel::new(10, 0);
        let old = w.insert(100, 1);
        assert_eq!(w.cancel(old), Some(1));
        let new = w.insert(500, 2);
        assert_eq!(old.key, new.key, "the slot now belongs to another timer");
        assert_eq!(w.cancel(old), None);
        assert!(!w.reschedule(old, 1_000));
        assert_eq!(w.deadline_ms(old), None);
        assert_eq!(w.payload(old), None);
        let fired = w.poll(100);
        assert!(fired.is_none());
        assert_eq!(drain(&mut w, 500), [2]);
        // The id of a timer that fired is stale too.
        let c = w.insert(600, 3);
        assert_eq!(w.poll(600), Some((c, 3)));
        let d = w.insert(700, 4);
        assert_eq!(w.cancel(c), None);
        assert_eq!(w.payload(d), Some(4));
    }
}
