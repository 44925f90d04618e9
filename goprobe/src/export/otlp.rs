//! OTLP push: one exporter (one HTTP client or one gRPC channel) for every process exported, a
//! thread that pushes each process' metrics every interval, and the final push, which never
//! takes longer than the export timeout.
//!
//! Temporality is cumulative, so a push that fails loses nothing: the next one that succeeds
//! carries everything. That is why a round stops at its first failure (the collector is down
//! or not answering; the other processes' pushes would only wait on it) and why nothing is
//! queued for a collector that is away.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    task::{Context, Poll, Wake, Waker},
    thread,
    time::{Duration, Instant},
};

use opentelemetry_otlp::{MetricExporter, Protocol as OtlpProtocol, WithExportConfig as _};
use opentelemetry_sdk::metrics::{
    Temporality, data::ResourceMetrics, exporter::PushMetricExporter,
};
use tracing::{debug, warn};

use super::{ExportError, OtlpConfig, Protocol, prometheus::Registry};

/// How long past its timeout the final push is waited for: the exporter's own bound is per
/// attempt (an attempt started just before the retry deadline may run one more timeout), so
/// goprobe stops waiting itself.
const FINAL_GRACE: Duration = Duration::from_millis(250);

/// The exporter shared by every process, and the push counters.
pub(super) struct Otlp {
    exporter: MetricExporter,
    /// The URL pushed to, for messages.
    endpoint: String,
    timeout: Duration,
    failures: Arc<AtomicU64>,
    /// Drives the gRPC client's connections (tonic needs Tokio), whatever runtime the caller
    /// has, so the final push works when that runtime no longer runs.
    grpc_runtime: Option<tokio::runtime::Runtime>,
    /// The last values of processes that ended while exporting, for the next round.
    pending: Mutex<Vec<Arc<ResourceMetrics>>>,
}

impl Otlp {
    pub(super) fn new(config: &OtlpConfig, failures: Arc<AtomicU64>) -> Result<Self, ExportError> {
        let err = |e: &dyn std::fmt::Display| ExportError::Otlp {
            endpoint: config.endpoint.clone(),
            message: e.to_string(),
        };
        let (exporter, grpc_runtime) = match config.protocol {
            Protocol::Http => {
                // NB: the blocking reqwest client owns a Tokio runtime and panics when built or
                // dropped inside another one; a plain thread builds it wherever we are called.
                let built = thread::scope(|s| {
                    s.spawn(|| {
                        MetricExporter::builder()
                            .with_http()
                            .with_protocol(OtlpProtocol::HttpBinary)
                            .with_endpoint(config.endpoint.clone())
                            .with_timeout(config.timeout)
                            .with_temporality(Temporality::Cumulative)
                            .build()
                    })
                    .join()
                })
                .map_err(|_| err(&"exporter construction panicked"))?
                .map_err(|e| err(&e))?;
                (built, None)
            }
            Protocol::Grpc => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("goprobe-otlp-grpc")
                    .enable_all()
                    .build()
                    .map_err(ExportError::Runtime)?;
                let built = {
                    let _guard = rt.enter();
                    MetricExporter::builder()
                        .with_tonic()
                        .with_endpoint(config.endpoint.clone())
                        .with_timeout(config.timeout)
                        .with_temporality(Temporality::Cumulative)
                        .build()
                        .map_err(|e| err(&e))?
                };
                (built, Some(rt))
            }
        };
        Ok(Self {
            exporter,
            endpoint: config.endpoint.clone(),
            timeout: config.timeout,
            failures,
            grpc_runtime,
            pending: Mutex::default(),
        })
    }

    /// Pushes one process' metrics; false when that failed after the exporter's retries
    /// (opentelemetry-otlp 0.33: exponential backoff from 100 ms, within the timeout).
    fn push(&self, rm: &ResourceMetrics) -> bool {
        if rm.scope_metrics().next().is_none() {
            return true;
        }
        let export = self.exporter.export(rm);
        let result = match &self.grpc_runtime {
            Some(rt) => rt.handle().block_on(export),
            // NB: not inside a Tokio runtime: the blocking reqwest client refuses to run there.
            None => block_on(export),
        };
        match result {
            Ok(()) => true,
            Err(e) => {
                self.failed(1, &e);
                false
            }
        }
    }

    /// Counts `n` pushes that did not reach the collector, and warns at the first and at every
    /// 10th: an unreachable collector must not flood the logs.
    fn failed(&self, n: u64, e: &dyn std::fmt::Display) {
        let before = self.failures.fetch_add(n, Ordering::Relaxed);
        let after = before + n;
        if before == 0 || before / 10 != after / 10 {
            warn!(
                endpoint = %self.endpoint,
                failures = after,
                "OTLP export failed (goprobe keeps profiling and retries at the next interval): {e}"
            );
        }
    }

    /// Pushes `all` one after the other, until one fails or `deadline` passes; the rest count
    /// as failed (the next push carries their values).
    fn push_all(&self, all: &[Arc<ResourceMetrics>], deadline: Option<Instant>) -> usize {
        for (i, rm) in all.iter().enumerate() {
            let late = deadline.is_some_and(|d| Instant::now() >= d);
            if late || !self.push(rm) {
                let left = (all.len() - i - usize::from(!late)) as u64;
                if left > 0 {
                    self.failed(left, &"skipped after a failed or late export");
                }
                return i;
            }
        }
        all.len()
    }

    /// Keeps the last values of a process that ended, for the next round.
    pub(super) fn push_later(&self, rm: Arc<ResourceMetrics>) {
        lock(&self.pending).push(rm);
    }

    fn take_pending(&self) -> Vec<Arc<ResourceMetrics>> {
        std::mem::take(&mut *lock(&self.pending))
    }
}

impl Drop for Otlp {
    fn drop(&mut self) {
        // A connection task stuck on a collector that never answers must not hold the exit.
        if let Some(rt) = self.grpc_runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The thread that pushes every process' metrics each `interval`; it ends when this is dropped.
pub(super) struct Pusher {
    _stop: mpsc::Sender<()>,
}

impl Pusher {
    pub(super) fn spawn(otlp: Arc<Otlp>, registry: Registry, interval: Duration) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let spawned = thread::Builder::new()
            .name("goprobe-otlp".into())
            .spawn(move || {
                let mut next = Instant::now() + interval;
                // Ends on the sender's drop (Disconnected).
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(next.saturating_duration_since(Instant::now()))
                {
                    let started = Instant::now();
                    let mut all = otlp.take_pending();
                    all.extend(registry.collect_live());
                    let pushed = otlp.push_all(&all, None);
                    debug!(
                        pushed,
                        of = all.len(),
                        ms = started.elapsed().as_millis() as u64,
                        "OTLP round"
                    );
                    // After a round longer than the interval, the next one starts at once.
                    next = (next + interval).max(Instant::now());
                }
            });
        if let Err(e) = spawned {
            warn!("no OTLP export: cannot start its thread: {e}");
        }
        Self { _stop: stop }
    }
}

/// A final push under way (see [`super::Exporter::push_final`]).
#[must_use = "wait for the final push, or it may not reach the collector before exit"]
pub struct FinalPush {
    done: Option<(mpsc::Receiver<usize>, Instant, usize)>,
}

impl FinalPush {
    pub(super) fn none() -> Self {
        Self { done: None }
    }

    /// Starts pushing `all` on a thread of its own, bounded by the export timeout.
    pub(super) fn start(otlp: &Arc<Otlp>, mut all: Vec<Arc<ResourceMetrics>>) -> Self {
        let started = Instant::now();
        let deadline = started + otlp.timeout;
        all.splice(0..0, otlp.take_pending());
        let n = all.len();
        let (tx, rx) = mpsc::channel();
        let otlp = otlp.clone();
        let spawned = thread::Builder::new()
            .name("goprobe-otlp-final".into())
            .spawn(move || {
                let _ = tx.send(otlp.push_all(&all, Some(deadline)));
            });
        if let Err(e) = spawned {
            warn!("final OTLP export not sent: cannot start its thread: {e}");
            return Self::none();
        }
        Self {
            done: Some((rx, deadline + FINAL_GRACE, n)),
        }
    }

    /// Waits until the push is done or its time is up, whichever comes first.
    pub fn wait(self) {
        let Some((rx, until, n)) = self.done else {
            return;
        };
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(pushed) if pushed == n => debug!(pushed, "final OTLP export done"),
            Ok(pushed) => warn!(
                pushed,
                of = n,
                "final OTLP export incomplete (the warnings above name the cause); the collector \
                 has the values of the last export that succeeded"
            ),
            Err(_) => warn!(
                "final OTLP export not answered within the export timeout; the collector has the \
                 values of the last export that succeeded"
            ),
        }
    }
}

/// Runs `f` to completion on this thread (no Tokio: see [`Otlp::push`]).
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}
