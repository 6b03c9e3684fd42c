//! The metrics recorder: one `metrics` recorder that feeds both the Prometheus exporter (for
//! `/v1/metrics/prometheus`) and a registry of plain atomics (for the JSON `/v1/metrics`).
//!
//! The recorder is process-global (that is how the `metrics` facade works), so it is installed
//! once; every `App` in the process shares it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use daef_api::{HistogramSample, MetricSample, MetricsSnapshot};
use daef_core::metric;
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use metrics_util::registry::{Registry, Storage};

/// Latency buckets for `http_request_duration_seconds` (Prometheus histogram, not a summary, so
/// replicas can be aggregated).
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Renders the process's metrics in both formats.
#[derive(Clone)]
pub struct Metrics {
    prometheus: PrometheusHandle,
    json: Arc<Registry<Key, JsonStorage>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

static INSTALLED: OnceLock<Metrics> = OnceLock::new();

impl Metrics {
    /// Installs the global recorder on first use and returns the shared handle. If another
    /// recorder was installed first (an embedding application's), DAEF's endpoints render only
    /// what reaches this one, which is nothing; the warning says so.
    pub fn global() -> Metrics {
        INSTALLED
            .get_or_init(|| {
                let prometheus_recorder = PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Full(metric::HTTP_REQUEST_DURATION_SECONDS.to_owned()), LATENCY_BUCKETS)
                    .map(PrometheusBuilder::build_recorder)
                    .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
                let handle = Metrics {
                    prometheus: prometheus_recorder.handle(),
                    json: Arc::new(Registry::new(JsonStorage)),
                };
                let recorder = DualRecorder { prometheus: prometheus_recorder, json: handle.json.clone() };
                if metrics::set_global_recorder(recorder).is_err() {
                    tracing::warn!("a metrics recorder was already installed; DAEF's metrics endpoints will be empty");
                }
                metric::describe();
                handle
            })
            .clone()
    }

    /// Prometheus text exposition.
    pub fn render_prometheus(&self) -> String {
        self.prometheus.render()
    }

    /// Housekeeping the Prometheus exporter needs now and then (drains histogram buffers).
    pub fn run_upkeep(&self) {
        self.prometheus.run_upkeep();
    }

    /// Every metric as JSON, sorted by name then labels.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut snapshot = MetricsSnapshot::default();
        self.json.visit_counters(|key, counter| {
            snapshot.counters.push(MetricSample {
                name: name(key),
                labels: labels(key),
                value: counter.load(Ordering::Relaxed) as f64,
            });
        });
        self.json.visit_gauges(|key, gauge| {
            snapshot.gauges.push(MetricSample {
                name: name(key),
                labels: labels(key),
                value: f64::from_bits(gauge.load(Ordering::Relaxed)),
            });
        });
        self.json.visit_histograms(|key, histogram| {
            snapshot.histograms.push(HistogramSample {
                name: name(key),
                labels: labels(key),
                count: histogram.count.load(Ordering::Relaxed),
                sum: f64::from_bits(histogram.sum.load(Ordering::Relaxed)),
            });
        });
        snapshot
            .counters
            .sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        snapshot
            .gauges
            .sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        snapshot
            .histograms
            .sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        snapshot
    }
}

fn name(key: &Key) -> String {
    key.name().to_owned()
}

fn labels(key: &Key) -> BTreeMap<String, String> {
    key.labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect()
}

/// Storage for the JSON side: counters and gauges are atomics; a histogram keeps only its count
/// and sum, so memory stays constant however many observations arrive.
#[derive(Debug)]
struct JsonStorage;

#[derive(Debug, Default)]
struct CountSum {
    count: AtomicU64,
    sum: AtomicU64,
}

impl HistogramFn for CountSum {
    fn record(&self, value: f64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }
}

impl Storage<Key> for JsonStorage {
    type Counter = Arc<AtomicU64>;
    type Gauge = Arc<AtomicU64>;
    type Histogram = Arc<CountSum>;

    fn counter(&self, _: &Key) -> Self::Counter {
        Arc::new(AtomicU64::new(0))
    }

    fn gauge(&self, _: &Key) -> Self::Gauge {
        Arc::new(AtomicU64::new(0))
    }

    fn histogram(&self, _: &Key) -> Self::Histogram {
        Arc::new(CountSum::default())
    }
}

/// Sends every registration to both recorders.
struct DualRecorder {
    prometheus: PrometheusRecorder,
    json: Arc<Registry<Key, JsonStorage>>,
}

struct Both<A, B>(A, B);

impl CounterFn for Both<Counter, Arc<AtomicU64>> {
    fn increment(&self, value: u64) {
        self.0.increment(value);
        CounterFn::increment(&*self.1, value);
    }
    fn absolute(&self, value: u64) {
        self.0.absolute(value);
        CounterFn::absolute(&*self.1, value);
    }
}

impl GaugeFn for Both<Gauge, Arc<AtomicU64>> {
    fn increment(&self, value: f64) {
        self.0.increment(value);
        GaugeFn::increment(&*self.1, value);
    }
    fn decrement(&self, value: f64) {
        self.0.decrement(value);
        GaugeFn::decrement(&*self.1, value);
    }
    fn set(&self, value: f64) {
        self.0.set(value);
        GaugeFn::set(&*self.1, value);
    }
}

impl HistogramFn for Both<Histogram, Arc<CountSum>> {
    fn record(&self, value: f64) {
        self.0.record(value);
        self.1.record(value);
    }
}

impl Recorder for DualRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        let json = self.json.get_or_create_counter(key, Arc::clone);
        Counter::from_arc(Arc::new(Both(
            self.prometheus.register_counter(key, metadata),
            json,
        )))
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        let json = self.json.get_or_create_gauge(key, Arc::clone);
        Gauge::from_arc(Arc::new(Both(
            self.prometheus.register_gauge(key, metadata),
            json,
        )))
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        let json = self.json.get_or_create_histogram(key, Arc::clone);
        Histogram::from_arc(Arc::new(Both(
            self.prometheus.register_histogram(key, metadata),
            json,
        )))
    }
}
