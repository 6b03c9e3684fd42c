//! The overview's sparkline: completed tasks per second over the last 15 minutes, sampled in
//! this replica every [`SAMPLE_EVERY`] from its own `task_reports_total` counter.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use daef_core::metric;
use daef_http::App;

/// How often the counter is sampled.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Samples kept: 15 minutes' worth.
pub(crate) const SAMPLES: usize = 90;

/// A ring buffer of tasks-per-second samples, oldest first.
#[derive(Debug, Default)]
pub struct Throughput {
    rates: Mutex<VecDeque<f64>>,
}

impl Throughput {
    /// Starts sampling `app`'s metrics; the task ends when the console is dropped.
    pub fn start(app: Arc<App>) -> Arc<Self> {
        let throughput = Arc::new(Self::default());
        let weak: Weak<Self> = Arc::downgrade(&throughput);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SAMPLE_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last: Option<f64> = None;
            loop {
                ticks.tick().await;
                let Some(throughput) = weak.upgrade() else {
                    return;
                };
                let done = app
                    .metrics()
                    .snapshot()
                    .counter_sum(metric::TASK_REPORTS_TOTAL, &[("status", "Completed")]);
                if let Some(previous) = last {
                    throughput.record((done - previous).max(0.0) / SAMPLE_EVERY.as_secs_f64());
                }
                last = Some(done);
            }
        });
        throughput
    }

    /// Adds a sample, dropping the oldest beyond [`SAMPLES`].
    pub fn record(&self, rate: f64) {
        let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        if rates.len() == SAMPLES {
            rates.pop_front();
        }
        rates.push_back(rate);
    }

    /// The samples, oldest first.
    pub fn rates(&self) -> Vec<f64> {
        self.rates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

/// An SVG polyline's `points` for `rates` in a `width` × `height` box (the highest sample at
/// the top), and the highest sample.
pub(crate) fn sparkline(rates: &[f64], width: f64, height: f64) -> (String, f64) {
    let peak = rates.iter().copied().fold(0.0, f64::max);
    let scale = if peak > 0.0 { height / peak } else { 0.0 };
    let step = width / (SAMPLES.max(2) - 1) as f64;
    let offset = (SAMPLES - rates.len().min(SAMPLES)) as f64 * step;
    let points = rates
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{:.1},{:.1}", offset + i as f64 * step, height - r * scale))
        .collect::<Vec<_>>()
        .join(" ");
    (points, peak)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_fifteen_minutes() {
        let t = Throughput::default();
        for i in 0..(SAMPLES + 5) {
            t.record(i as f64);
        }
        let rates = t.rates();
        assert_eq!(rates.len(), SAMPLES);
        assert_eq!(rates[0], 5.0);
        assert_eq!(rates[SAMPLES - 1], (SAMPLES + 4) as f64);
    }

    #[test]
    fn the_sparkline_is_right_aligned_and_scaled_to_its_peak() {
        let (points, peak) = sparkline(&[0.0, 10.0], 89.0, 20.0);
        assert_eq!(peak, 10.0);
        assert_eq!(points, "88.0,20.0 89.0,0.0");
        assert_eq!(sparkline(&[], 89.0, 20.0), (String::new(), 0.0));
    }
}
