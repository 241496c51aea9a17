//! CROSS_MEMBERS folding (contract section 5): a cross node's member list is sent at once when
//! it changes, and then at most once per [`FOLD_MS`] while changes keep coming: the changes of
//! a window go out together, as one complete and current list, when the window ends. A burst
//! of arrivals costs a cross node a few complete lists, not one per arrival. The first list
//! after CROSS_INFO is never delayed ([`MemberFold::reset`]). Window ends are deadlines on the
//! cluster's one timer wheel.

use super::alloc::CrossId;
use super::Timer;
use crate::timer::{TimerId, TimerWheel};
use hashbrown::HashMap;

/// The fold window. The contract allows 200 ms; the wheel's tick and one loop turn of lateness
/// fit in the rest.
pub const FOLD_MS: u64 = 150;

// A folded change waits at most the window plus one wheel tick.
const _: () = assert!(FOLD_MS + super::TICK_MS < 200);

/// A cross node whose list was sent less than [`FOLD_MS`] ago.
#[derive(Debug)]
struct Window {
    until_ms: u64,
    /// Its members changed since the list was sent: send the current list when the window ends.
    dirty: bool,
    timer: TimerId,
}

/// The open windows, one per cross node that got a list lately.
#[derive(Debug, Default)]
pub struct MemberFold {
    open: HashMap<CrossId, Window>,
    /// Windows that ended dirty: their lists are due now.
    due: Vec<CrossId>,
}

impl MemberFold {
    /// Given the cross nodes whose member lists changed, keeps in `members` those whose list is
    /// to be sent now (no window open, or a window that ended dirty) and holds the others until
    /// their window ends. Every list sent opens a window.
    pub fn apply(
        &mut self,
        members: &mut Vec<CrossId>,
        now_ms: u64,
        wheel: &mut TimerWheel<Timer>,
    ) {
        if !self.due.is_empty() {
            members.append(&mut self.due);
            members.sort_unstable();
            members.dedup();
        }
        members.retain(|&cross| {
            if let Some(w) = self.open.get_mut(&cross) {
                if now_ms < w.until_ms {
                    w.dirty = true;
                    return false;
                }
                wheel.cancel(w.timer);
            }
            let until_ms = now_ms + FOLD_MS;
            let timer = wheel.insert(until_ms, Timer::Fold(cross));
            self.open.insert(
                cross,
                Window {
                    until_ms,
                    dirty: false,
                    timer,
                },
            );
            true
        });
    }

    /// `cross`'s window ended; true when its list is now due (the caller then announces).
    pub fn fired(&mut self, cross: CrossId) -> bool {
        match self.open.remove(&cross) {
            Some(w) if w.dirty => {
                self.due.push(cross);
                true
            }
            _ => false,
        }
    }

    /// `cross` sent CROSS_INFO: its first list goes out at once.
    pub fn reset(&mut self, cross: CrossId, wheel: &mut TimerWheel<Timer>) {
        if let Some(w) = self.open.remove(&cross) {
            wheel.cancel(w.timer);
        }
        self.due.retain(|&c| c != cross);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wheel() -> TimerWheel<Timer> {
        TimerWheel::new(10, 0)
    }

    #[test]
    fn the_first_change_goes_at_once_and_a_burst_folds_into_one_list_at_the_window_end() {
        let mut w = wheel();
        let mut fold = MemberFold::default();
        let mut m = vec![1, 2];
        fold.apply(&mut m, 0, &mut w);
        assert_eq!(m, [1, 2], "no window open: sent now");
        for t in [10, 50, 140] {
            let mut m = vec![1];
            fold.apply(&mut m, t, &mut w);
            assert!(m.is_empty(), "held inside the window at {t}");
        }
        // The window ends: 1 changed, 2 did not.
        let mut fired = Vec::new();
        while let Some((_, t)) = w.poll(FOLD_MS) {
            if let Timer::Fold(c) = t {
                if fold.fired(c) {
                    fired.push(c);
                }
            }
        }
        assert_eq!(fired, [1]);
        let mut m = Vec::new();
        fold.apply(&mut m, FOLD_MS, &mut w);
        assert_eq!(m, [1], "the current list, once");
        // That list opened a new window; with no more changes it closes quietly.
        while let Some((_, t)) = w.poll(2 * FOLD_MS) {
            if let Timer::Fold(c) = t {
                assert!(!fold.fired(c));
            }
        }
        let mut m = vec![1];
        fold.apply(&mut m, 2 * FOLD_MS + 1, &mut w);
        assert_eq!(m, [1], "quiet again: sent at once");
    }

    #[test]
    fn cross_info_resets_the_window() {
        let mut w = wheel();
        let mut fold = MemberFold::default();
        let mut m = vec![7];
        fold.apply(&mut m, 0, &mut w);
        let mut m = vec![7];
        fold.apply(&mut m, 20, &mut w);
        assert!(m.is_empty());
        fold.reset(7, &mut w);
        assert!(w.is_empty(), "its window's deadline is cancelled");
        let mut m = vec![7];
        fold.apply(&mut m, 30, &mut w);
        assert_eq!(m, [7], "the first list after CROSS_INFO is not delayed");
    }
}
