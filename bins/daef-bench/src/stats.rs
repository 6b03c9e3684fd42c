//! Latency samples and their percentiles.

use std::fmt;
use std::time::Duration;

/// Latency samples of one operation, in microseconds. Each driver loop keeps its own and they
/// are merged at the end, so recording never contends.
#[derive(Clone, Debug, Default)]
pub(crate) struct Samples(Vec<u32>);

impl Samples {
    pub(crate) fn record(&mut self, d: Duration) {
        self.0
            .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
    }

    pub(crate) fn merge(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    pub(crate) fn summary(mut self) -> Latency {
        self.0.sort_unstable();
        let n = self.0.len();
        if n == 0 {
            return Latency::default();
        }
        let sum: u64 = self.0.iter().map(|&v| u64::from(v)).sum();
        Latency {
            count: n as u64,
            mean_us: sum as f64 / n as f64,
            p50_us: percentile(&self.0, 50.0),
            p99_us: percentile(&self.0, 99.0),
            max_us: self.0[n - 1],
        }
    }
}

/// Nearest-rank percentile of sorted samples: the smallest value with at least `p` percent of
/// the samples at or below it.
pub(crate) fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The summary of one operation's latencies.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Latency {
    pub(crate) count: u64,
    pub(crate) mean_us: f64,
    pub(crate) p50_us: u32,
    pub(crate) p99_us: u32,
    pub(crate) max_us: u32,
}

impl Latency {
    /// p99 as a multiple of p50 (the "tail" target compares them).
    pub(crate) fn tail_ratio(&self) -> f64 {
        if self.p50_us == 0 {
            return 0.0;
        }
        f64::from(self.p99_us) / f64::from(self.p50_us)
    }
}

/// Milliseconds with sensible precision.
pub(crate) struct Ms(pub(crate) u32);

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = f64::from(self.0) / 1000.0;
        if ms < 10.0 {
            write!(f, "{ms:.2}")
        } else if ms < 100.0 {
            write!(f, "{ms:.1}")
        } else {
            write!(f, "{ms:.0}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut s = Samples::default();
        for us in (1..=100).rev() {
            s.record(Duration::from_micros(us));
        }
        let l = s.summary();
        assert_eq!(l.count, 100);
        assert_eq!(l.p50_us, 50);
        assert_eq!(l.p99_us, 99);
        assert_eq!(l.max_us, 100);
        assert!((l.mean_us - 50.5).abs() < 1e-9);
        assert!((l.tail_ratio() - 1.98).abs() < 1e-9);
    }

    #[test]
    fn one_sample_and_none() {
        let mut s = Samples::default();
        s.record(Duration::from_millis(3));
        let l = s.clone().summary();
        assert_eq!((l.p50_us, l.p99_us, l.max_us), (3000, 3000, 3000));
        assert_eq!(Samples::default().summary(), Latency::default());
        let mut merged = Samples::default();
        merged.merge(s);
        merged.record(Duration::from_millis(1));
        assert_eq!(merged.summary().p50_us, 1000);
    }

    #[test]
    fn milliseconds_print_readably() {
        assert_eq!(Ms(1234).to_string(), "1.23");
        assert_eq!(Ms(12_345).to_string(), "12.3");
        assert_eq!(Ms(123_456).to_string(), "123");
    }
}
