//! A mergeable log-linear histogram of u64 values (ns): 32 sub-buckets per power of two, so
//! every reported percentile is within ~3% of the true value (reported at the bucket's upper
//! edge, never understated).

const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = (64 - SUB_BITS as usize) * SUB + SUB;

/// Counts of values per bucket.
#[derive(Clone)]
pub struct Hist {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

fn bucket(v: u64) -> usize {
    if v < (2 * SUB) as u64 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    let sub = (v >> (e - SUB_BITS)) as usize & (SUB - 1);
    (e - SUB_BITS + 1) as usize * SUB + sub
}

/// The largest value in bucket `i`.
fn upper_edge(i: usize) -> u64 {
    if i < 2 * SUB {
        return i as u64;
    }
    let e = (i / SUB) as u32 + SUB_BITS - 1;
    let sub = (i % SUB) as u64;
    let low = (SUB as u64 + sub) << (e - SUB_BITS);
    low.saturating_add((1u64 << (e - SUB_BITS)) - 1)
}

impl Hist {
    /// Records one value.
    pub fn record(&mut self, v: u64) {
        self.counts[bucket(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1), 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper_edge(i).min(self.max);
            }
        }
        self.max
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Sparse form for JSON: [[bucket, count], ...] and the max.
    pub fn to_json(&self) -> serde_json::Value {
        let buckets: Vec<[u64; 2]> = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| [i as u64, *c])
            .collect();
        serde_json::json!({"buckets": buckets, "max": self.max})
    }

    /// Reads the form written by [`Self::to_json`].
    pub fn from_json(v: &serde_json::Value) -> Hist {
        let mut h = Hist::default();
        if let Some(list) = v["buckets"].as_array() {
            for pair in list {
                let (Some(i), Some(c)) = (pair[0].as_u64(), pair[1].as_u64()) else {
                    continue;
                };
                if let Some(slot) = h.counts.get_mut(i as usize) {
                    *slot += c;
                    h.total += c;
                }
            }
        }
        h.max = v["max"].as_u64().unwrap_or(0);
        h
    }

    /// p50/p99/p999/max in µs, for reports.
    pub fn summary_us(&self) -> serde_json::Value {
        let us = |ns: u64| (ns as f64 / 1000.0 * 10.0).round() / 10.0;
        serde_json::json!({
            "count": self.count(),
            "p50_us": us(self.quantile(0.50)),
            "p99_us": us(self.quantile(0.99)),
            "p999_us": us(self.quantile(0.999)),
            "max_us": us(self.max),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_edges_contain_their_values() {
        let mut last = 0;
        for v in (0..200_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let b = bucket(v);
            assert!(b >= last && b < BUCKETS, "{v}");
            assert!(upper_edge(b) >= v, "{v} above its bucket's edge");
            if b > 0 {
                assert!(upper_edge(b - 1) < v, "{v} belongs lower");
            }
            last = b;
        }
    }

    #[test]
    fn quantiles_are_within_3_percent_and_never_understated() {
        let mut h = Hist::default();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for q in [0.5, 0.99, 0.999] {
            let exact = (q * 100_000.0) as u64 * 1000;
            let got = h.quantile(q);
            assert!(
                got >= exact && (got as f64) <= exact as f64 * 1.032,
                "q{q}: {got} vs {exact}"
            );
        }
        let back = Hist::from_json(&h.to_json());
        assert_eq!(back.quantile(0.99), h.quantile(0.99));
        assert_eq!(back.count(), h.count());
    }
}
