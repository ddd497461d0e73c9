//! Server-side latency histograms, served as Prometheus text on
//! `GET /metrics`. Fixed log-spaced buckets of atomic counters: recording
//! is a few relaxed atomic adds, with no lock and no allocation.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets per doubling: each bucket's upper bound is about 19% above the
/// one before it.
const STEPS: u32 = 4;
/// From 1 µs (2^10 ns) to about 69 s (2^36 ns).
const FIRST_POW: u32 = 10;
const LAST_POW: u32 = 36;
const BUCKETS: usize = ((LAST_POW - FIRST_POW) * STEPS) as usize;

/// A histogram of durations.
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last also takes
    /// everything above its bound.
    counts: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

/// Upper bound of bucket `i`, in nanoseconds: 2^p · 2^(s/STEPS).
fn bound(i: usize) -> f64 {
    let exp = FIRST_POW as f64 + (i as f64 + 1.0) / STEPS as f64;
    exp.exp2()
}

impl Histogram {
    /// Records `times` observations of `d`.
    pub fn record(&self, d: Duration, times: u64) {
        let nanos = d.as_nanos().min(u64::MAX as u128) as u64;
        // The first bucket whose bound is at least `nanos`.
        let exp = (nanos.max(1) as f64).log2();
        let i = ((exp - FIRST_POW as f64) * STEPS as f64).ceil() - 1.0;
        let i = (i.max(0.0) as usize).min(BUCKETS - 1);
        self.counts[i].fetch_add(times, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(nanos.saturating_mul(times), Ordering::Relaxed);
    }

    /// Appends the histogram as Prometheus text (cumulative buckets, in
    /// seconds).
    pub fn write_prometheus(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut total = 0;
        for (i, c) in self.counts.iter().enumerate() {
            total += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{:e}\"}} {total}", bound(i) / 1e9);
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {total}");
    }
}

/// What the server measures of itself.
#[derive(Default)]
pub struct Metrics {
    /// Per task placed: from the placement's start (cache caught up with
    /// the store, hosts sampled and ranked) until its host is chosen and
    /// reserved, before the durable commit.
    pub placement_decision: Histogram,
}

impl Metrics {
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        self.placement_decision.write_prometheus(
            "wharf_placement_decision_seconds",
            "Time to choose and reserve a host per task placed, before the commit.",
            &mut out,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (upper bound in seconds, cumulative count) per bucket line.
    fn buckets(text: &str) -> Vec<(f64, u64)> {
        text.lines()
            .filter_map(|l| l.strip_prefix("h_bucket{le=\""))
            .filter_map(|l| {
                let (le, n) = l.split_once("\"} ")?;
                Some((le.parse().ok()?, n.parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn observations_land_in_the_bucket_that_bounds_them() {
        let h = Histogram::default();
        h.record(Duration::from_micros(50), 3);
        h.record(Duration::from_millis(2), 1);
        h.record(Duration::from_secs(1000), 1);
        let mut text = String::new();
        h.write_prometheus("h", "test", &mut text);
        let b = buckets(&text);
        assert_eq!(b.len(), BUCKETS + 1, "every bucket and +Inf");
        // Cumulative, and each observation is at most its bucket's bound
        // and above the previous bound.
        let first_with = |n: u64| b.iter().position(|&(_, c)| c >= n).unwrap();
        let at = first_with(3);
        assert!(
            b[at].0 >= 50e-6 && b[at - 1].0 < 50e-6,
            "{:?}",
            &b[at - 1..=at]
        );
        assert_eq!(b[at - 1].1, 0);
        let at = first_with(4);
        assert!(b[at].0 >= 2e-3 && b[at - 1].0 < 2e-3);
        assert_eq!(
            b[b.len() - 2].1,
            5,
            "beyond the last bound counts in the last"
        );
        assert!(text.contains("h_count 5"));
        let sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("h_sum "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - (1000.0 + 0.002 + 150e-6)).abs() < 1e-6, "{sum}");
    }
}
