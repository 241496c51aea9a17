//! Who may try to log in: the node allowlist (CIDRs, AUTH_RESULT 4 otherwise) and a
//! throttle on identities and addresses that keep failing AUTH (an identity's AUTHs are closed
//! unanswered, an address's connections closed at accept, for the rest of a window), with a
//! budget on the log lines failures produce so a flood cannot flood the log.

use crate::net::Cidr;
use hashbrown::HashMap;
use std::net::IpAddr;

/// True when `ip` may connect: the list is empty, or a block contains it.
pub fn allowed(list: &[Cidr], ip: IpAddr) -> bool {
    list.is_empty() || list.iter().any(|c| c.contains(ip))
}

/// Keys tracked at most per table; past it, expired entries are dropped, and if none expired
/// the new key is not tracked (memory stays bounded under a spread-out attack).
const MAX_TRACKED: usize = 65_536;

/// An address may fail this many times `auth_fail_limit` before it is refused at accept: its
/// budget covers every failure from it (malformed AUTHs, unknown node types, addresses off the
/// allowlist, and the bad signatures and times of all its identities together), so it must be
/// far above what one failing identity spends.
pub const ADDRESS_BUDGET_FACTOR: u32 = 50;

/// Who failed: the source address, and for a bad signature or time, the identity it claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The peer's address.
    pub ip: IpAddr,
    /// The claimed node_type (as sent).
    pub node_type: u8,
    /// The claimed node_id.
    pub node_id: u32,
}

/// Failures per key within a window.
#[derive(Debug)]
struct Counter<K> {
    limit: u32,
    /// key -> (failures, window start ms).
    failures: HashMap<K, (u32, u64)>,
}

impl<K: std::hash::Hash + Eq + Copy> Counter<K> {
    fn is_blocked(&self, key: &K, now_ms: u64, window_ms: u64) -> bool {
        self.limit != 0
            && self.failures.get(key).is_some_and(|&(n, start)| {
                n >= self.limit && now_ms < start.saturating_add(window_ms)
            })
    }

    /// Counts one failure; true when this one reached the limit.
    fn fail(&mut self, key: K, now_ms: u64, window_ms: u64) -> bool {
        if self.limit == 0 {
            return false;
        }
        if self.failures.len() >= MAX_TRACKED && !self.failures.contains_key(&key) {
            self.failures
                .retain(|_, &mut (_, start)| now_ms < start.saturating_add(window_ms));
            if self.failures.len() >= MAX_TRACKED {
                return false;
            }
        }
        let entry = self.failures.entry(key).or_insert((0, now_ms));
        if now_ms >= entry.1.saturating_add(window_ms) {
            *entry = (0, now_ms);
        }
        entry.0 += 1;
        entry.0 == self.limit
    }
}

/// Counts failed AUTHs within a window, twice: per identity (address + node type + node id)
/// for bad signatures and times, so one misconfigured node cannot lock out its healthy
/// neighbours on the same host; and per address for every failure, with a budget
/// [`ADDRESS_BUDGET_FACTOR`] times larger, so a flood of malformed AUTHs or of ever-new
/// identities is still cut off at accept.
#[derive(Debug)]
pub struct AuthThrottle {
    window_ms: u64,
    by_address: Counter<IpAddr>,
    by_identity: Counter<Identity>,
}

/// What a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Counted; still allowed.
    Counted,
    /// This failure reached the identity's limit: its AUTHs are closed unanswered from now on,
    /// for the window.
    IdentityBlocked,
    /// This failure reached the address's limit: its connections are refused at accept, for
    /// the window.
    Blocked,
}

impl AuthThrottle {
    /// `limit` failures of one identity within `window_ms` block that identity; `limit` ×
    /// [`ADDRESS_BUDGET_FACTOR`] failures of one address block the address (limit 0: never).
    pub fn new(limit: u32, window_ms: u64) -> Self {
        AuthThrottle {
            window_ms,
            by_address: Counter {
                limit: limit.saturating_mul(ADDRESS_BUDGET_FACTOR),
                failures: HashMap::new(),
            },
            by_identity: Counter {
                limit,
                failures: HashMap::new(),
            },
        }
    }

    /// Changes the settings (SIGHUP); counts so far stay.
    pub fn reconfigure(&mut self, limit: u32, window_ms: u64) {
        self.window_ms = window_ms;
        self.by_address.limit = limit.saturating_mul(ADDRESS_BUDGET_FACTOR);
        self.by_identity.limit = limit;
    }

    /// True when connections from `ip` are refused now.
    pub fn is_blocked(&self, ip: IpAddr, now_ms: u64) -> bool {
        self.by_address.is_blocked(&ip, now_ms, self.window_ms)
    }

    /// True when AUTHs claiming `who` are closed unanswered now.
    pub fn identity_blocked(&self, who: &Identity, now_ms: u64) -> bool {
        self.by_identity.is_blocked(who, now_ms, self.window_ms)
    }

    /// Counts one failed AUTH (any counted code) against the address `ip`.
    pub fn fail(&mut self, ip: IpAddr, now_ms: u64) -> Failure {
        if self.by_address.fail(ip, now_ms, self.window_ms) {
            Failure::Blocked
        } else {
            Failure::Counted
        }
    }

    /// Counts a bad signature or time against the identity `who` claimed (its address is
    /// counted by [`AuthThrottle::fail`] as well).
    pub fn fail_identity(&mut self, who: Identity, now_ms: u64) -> Failure {
        if self.by_identity.fail(who, now_ms, self.window_ms) {
            Failure::IdentityBlocked
        } else {
            Failure::Counted
        }
    }

    /// Addresses and identities tracked now (for metrics and tests).
    pub fn tracked(&self) -> usize {
        self.by_address.failures.len() + self.by_identity.failures.len()
    }
}

/// At most `per_second` lines a second; the rest are counted and reported with the next line.
#[derive(Debug)]
pub struct LogBudget {
    per_second: u32,
    second: u64,
    used: u32,
    suppressed: u64,
}

impl LogBudget {
    /// A budget of `per_second` lines.
    pub fn new(per_second: u32) -> Self {
        LogBudget {
            per_second,
            second: 0,
            used: 0,
            suppressed: 0,
        }
    }

    /// `Some(suppressed since the last line)` when a line may be written now.
    pub fn take(&mut self, now_ms: u64) -> Option<u64> {
        let second = now_ms / 1000;
        if second != self.second {
            self.second = second;
            self.used = 0;
        }
        if self.used < self.per_second {
            self.used += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn an_empty_allowlist_admits_all_else_only_its_blocks() {
        let c: Cidr = "10.1.0.0/16".parse().expect("cidr");
        assert!(allowed(&[], ip("1.2.3.4")));
        assert!(!allowed(&[c], ip("1.2.3.4")));
    }

    #[test]
    fn an_identity_is_blocked_at_the_limit_for_the_rest_of_its_window() {
        let mut t = AuthThrottle::new(3, 60_000);
        let a = ip("10.0.0.1");
        let who = Identity {
            ip: a,
            node_type: 1,
            node_id: 7,
        };
        let neighbour = Identity { node_id: 8, ..who };
        assert_eq!(t.fail_identity(who, 0), Failure::Counted);
        assert_eq!(t.fail_identity(who, 1_000), Failure::Counted);
        assert!(!t.identity_blocked(&who, 1_000));
        assert_eq!(t.fail_identity(who, 2_000), Failure::IdentityBlocked);
        assert!(t.identity_blocked(&who, 2_000));
        assert!(
            !t.identity_blocked(&neighbour, 2_000),
            "same address, other node"
        );
        assert!(!t.is_blocked(a, 2_000), "the address is not blocked");
        let elsewhere = Identity {
            ip: ip("10.0.0.2"),
            ..who
        };
        assert!(
            !t.identity_blocked(&elsewhere, 2_000),
            "same node, other address"
        );
        assert!(t.identity_blocked(&who, 59_999));
        assert!(!t.identity_blocked(&who, 60_000), "the window ends");
        assert_eq!(
            t.fail_identity(who, 60_000),
            Failure::Counted,
            "a new window"
        );
        let mut off = AuthThrottle::new(0, 60_000);
        for _ in 0..100 {
            off.fail_identity(who, 0);
            off.fail(a, 0);
        }
        assert!(!off.is_blocked(a, 0) && !off.identity_blocked(&who, 0));
    }

    #[test]
    fn an_address_is_blocked_at_its_larger_budget_for_the_rest_of_its_window() {
        let mut t = AuthThrottle::new(3, 60_000);
        let a = ip("10.0.0.1");
        let budget = 3 * ADDRESS_BUDGET_FACTOR;
        for i in 1..budget {
            assert_eq!(t.fail(a, 0), Failure::Counted, "failure {i}");
        }
        assert!(!t.is_blocked(a, 0));
        assert_eq!(t.fail(a, 1_000), Failure::Blocked);
        assert!(t.is_blocked(a, 1_000));
        assert!(!t.is_blocked(ip("10.0.0.2"), 1_000), "others unaffected");
        assert!(!t.is_blocked(a, 60_000), "the window ends");
    }

    #[test]
    fn the_log_budget_counts_what_it_suppresses() {
        let mut b = LogBudget::new(2);
        assert_eq!(b.take(0), Some(0));
        assert_eq!(b.take(10), Some(0));
        assert_eq!(b.take(20), None);
        assert_eq!(b.take(30), None);
        assert_eq!(
            b.take(1_000),
            Some(2),
            "the next line reports the suppressed ones"
        );
    }
}
