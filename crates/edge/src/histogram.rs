//! A lock-free histogram for `prometheus-client`.
//!
//! The crate's own `Histogram` takes a write lock on every observation, which every
//! connection task would contend for on each answered request. This one keeps a relaxed
//! atomic per bucket and the sum in nanoseconds, so observing is two atomic adds; the
//! count is the bucket total, computed at scrape time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Lowest latency bucket: 10µs, below what a loopback round trip can show.
const FIRST_BUCKET: Duration = Duration::from_micros(10);
/// Latency buckets double from [`FIRST_BUCKET`]: 21 of them reach 10.5s.
const BUCKETS: u32 = 21;

#[derive(Debug)]
struct Inner {
    /// Upper bounds in nanoseconds, ascending; `counts` has one more slot for +Inf.
    bounds: Vec<u64>,
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

/// A histogram of durations; clones share the same buckets.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<Inner>);

impl Histogram {
    /// Buckets at 10µs, 20µs, 40µs ... 10.49s: microseconds to seconds, 21 series.
    pub fn latency() -> Self {
        let first = u64::try_from(FIRST_BUCKET.as_nanos()).unwrap_or(u64::MAX);
        Self::with_bounds((0..BUCKETS).map(|i| first << i).collect())
    }

    fn with_bounds(bounds: Vec<u64>) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self(Arc::new(Inner {
            bounds,
            counts,
            sum_nanos: AtomicU64::new(0),
        }))
    }

    /// Records `n` observations of `value`.
    pub fn observe(&self, value: Duration, n: u64) {
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        let bucket = self.0.bounds.partition_point(|&bound| bound < nanos);
        if let Some(count) = self.0.counts.get(bucket) {
            count.fetch_add(n, Ordering::Relaxed);
        }
        self.0
            .sum_nanos
            .fetch_add(nanos.saturating_mul(n), Ordering::Relaxed);
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // The encoder makes the bucket counts cumulative; f64::MAX is its +Inf bound.
        let buckets: Vec<(f64, u64)> = self
            .0
            .bounds
            .iter()
            // One correctly rounded division keeps the bounds short: 1.31072, not
            // Duration::as_secs_f64's 1.3107199999999999.
            .map(|&nanos| nanos as f64 / 1e9)
            .chain([f64::MAX])
            .zip(self.0.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|&(_, n)| n).sum();
        let sum = Duration::from_nanos(self.0.sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::Registry;

    use super::*;

    #[test]
    fn observations_fall_in_le_buckets() {
        let histogram = Histogram::latency();
        let mut registry = Registry::default();
        registry.register("t_seconds", "test", histogram.clone());
        histogram.observe(Duration::from_micros(10), 1);
        histogram.observe(Duration::from_micros(11), 2);
        histogram.observe(Duration::from_secs(60), 1);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "t_seconds_bucket{le=\"0.00001\"} 1",
            "t_seconds_bucket{le=\"0.00002\"} 3",
            "t_seconds_bucket{le=\"1.31072\"} 3",
            "t_seconds_bucket{le=\"10.48576\"} 3",
            "t_seconds_bucket{le=\"+Inf\"} 4",
            "t_seconds_count 4",
            "t_seconds_sum 60.000032",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
