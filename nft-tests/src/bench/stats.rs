//! Summaries of repeated measurements.

use std::time::Duration;

/// Median, 99th percentile and extremes of a sample of durations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub runs: usize,
    pub min: Duration,
    pub median: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// The `q`-quantile (0..=1) by the nearest-rank method: the smallest value with at
/// least `q` of the sample at or below it. `sorted` must be sorted and non-empty.
fn nearest_rank(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `None` for an empty sample.
pub fn summarize(sample: &[Duration]) -> Option<Summary> {
    if sample.is_empty() {
        return None;
    }
    let mut sorted = sample.to_vec();
    sorted.sort();
    // The median of an even sample is the mean of the middle two.
    let mid = sorted.len() / 2;
    let median = if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2
    } else {
        sorted[mid]
    };
    Some(Summary {
        runs: sorted.len(),
        min: sorted[0],
        median,
        p99: nearest_rank(&sorted, 0.99),
        max: sorted[sorted.len() - 1],
    })
}

/// Packets per second from a packet count over an interval (0 for an empty interval).
pub fn rate(packets: u64, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        packets as f64 / secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&x| Duration::from_millis(x)).collect()
    }

    #[test]
    fn empty_sample_has_no_summary() {
        assert_eq!(summarize(&[]), None);
    }

    #[test]
    fn median_of_odd_and_even_samples() {
        let s = summarize(&ms(&[5, 1, 3])).unwrap();
        assert_eq!(s.median, Duration::from_millis(3));
        assert_eq!(
            (s.min, s.max),
            (Duration::from_millis(1), Duration::from_millis(5))
        );
        let s = summarize(&ms(&[4, 1, 3, 2])).unwrap();
        assert_eq!(s.median, Duration::from_micros(2500));
    }

    #[test]
    fn p99_is_nearest_rank() {
        // 1..=200 ms: the 99th percentile is the 198th value.
        let v: Vec<u64> = (1..=200).rev().collect();
        let s = summarize(&ms(&v)).unwrap();
        assert_eq!(s.p99, Duration::from_millis(198));
        assert_eq!(s.runs, 200);
        // Few runs: p99 is the maximum.
        let s = summarize(&ms(&[1, 2, 9])).unwrap();
        assert_eq!(s.p99, Duration::from_millis(9));
    }

    #[test]
    fn rate_per_second() {
        assert_eq!(rate(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(rate(5, Duration::ZERO), 0.0);
    }
}
