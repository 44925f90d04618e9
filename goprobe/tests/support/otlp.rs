//! An OTLP metrics receiver inside the test process, built on the official
//! opentelemetry-proto service definitions: no OTLP-ingesting server can be installed on the
//! build machines (Debian bookworm's Prometheus 2.42 and VictoriaMetrics 1.79 predate OTLP
//! ingestion; there is no Collector package), and decoding with the generated types checks the
//! wire format goprobe sends, not a lenient reading of it.
//!
//! - gRPC: a tonic `MetricsServiceServer` (`opentelemetry.proto.collector.metrics.v1`).
//! - HTTP (`http/protobuf`): a hyper server that takes `POST /v1/metrics` with
//!   `content-type: application/x-protobuf` and answers with an encoded
//!   `ExportMetricsServiceResponse`, as the OTLP specification's "OTLP/HTTP" section says.
//!   Anything else (another path, a body that does not decode) is answered with an error status
//!   and recorded in [`Receiver::errors`] so a test can assert there was none.
//!
//! Each server runs on its own tokio runtime. [`Receiver::stop`] shuts that runtime down, which
//! drops the listener and every open connection, as a crashed collector would; [`Receiver::restart`]
//! binds the same port again.

use std::{
    collections::{BTreeMap, BTreeSet},
    convert::Infallible,
    io,
    net::{Ipv4Addr, SocketAddr, TcpListener as StdListener},
    sync::{Arc, Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

use http_body_util::{BodyExt as _, Full};
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::{
    collector::metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        metrics_service_server::{MetricsService, MetricsServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value},
    metrics::v1::{Metric, NumberDataPoint, metric::Data, number_data_point},
};
use prost::Message as _;

/// The OTLP transport, as goprobe's `--otlp-protocol` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/HTTP with protobuf bodies.
    Http,
    /// OTLP/gRPC.
    Grpc,
}

impl Protocol {
    /// The value of goprobe's `--otlp-protocol`.
    pub fn flag(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
        }
    }
}

/// One export request as it arrived.
#[derive(Clone, Debug)]
pub struct Export {
    pub at: Instant,
    pub request: ExportMetricsServiceRequest,
}

/// An attribute set, values written as text (`process.pid` → `"1234"`), for use as a map key.
pub type Attrs = BTreeMap<String, String>;

/// The cumulative state of one histogram data point.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramPoint {
    pub count: u64,
    pub sum: f64,
    pub bounds: Vec<f64>,
    pub bucket_counts: Vec<u64>,
    pub start_unix_ns: u64,
}

impl Export {
    /// Every metric of the request, over all resources and scopes.
    pub fn metrics(&self) -> impl Iterator<Item = &Metric> {
        self.request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
    }

    /// The metric called `name` in this request.
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics().find(|m| m.name == name)
    }

    /// The attributes of the request's resource (goprobe sends one resource per process).
    pub fn resource(&self) -> BTreeMap<String, any_value::Value> {
        assert_eq!(
            self.request.resource_metrics.len(),
            1,
            "one resource per export expected"
        );
        let resource = self.request.resource_metrics[0]
            .resource
            .as_ref()
            .expect("a resource");
        resource
            .attributes
            .iter()
            .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?.value?)))
            .collect()
    }
}

/// The values of a sum or gauge, by attribute set (integers converted to f64).
pub fn number_points(metric: &Metric) -> BTreeMap<Attrs, f64> {
    let points = number_data_points(metric);
    let by: BTreeMap<_, _> = points
        .iter()
        .map(|p| (attrs(&p.attributes), number_value(metric, p)))
        .collect();
    assert_eq!(
        by.len(),
        points.len(),
        "{}: repeated attribute sets",
        metric.name
    );
    by
}

/// The data points of a sum or gauge.
pub fn number_data_points(metric: &Metric) -> &[NumberDataPoint] {
    match &metric.data {
        Some(Data::Sum(s)) => &s.data_points,
        Some(Data::Gauge(g)) => &g.data_points,
        other => panic!("{} is not a sum or gauge: {other:?}", metric.name),
    }
}

/// A data point's value as f64, whether the metric is integer or floating point.
pub fn number_value(metric: &Metric, point: &NumberDataPoint) -> f64 {
    match point.value {
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        Some(number_data_point::Value::AsDouble(d)) => d,
        None => panic!("{}: data point without a value", metric.name),
    }
}

/// The points of an explicit-bucket histogram, by attribute set.
pub fn histogram_points(metric: &Metric) -> BTreeMap<Attrs, HistogramPoint> {
    let Some(Data::Histogram(h)) = &metric.data else {
        panic!("{} is not a histogram: {:?}", metric.name, metric.data)
    };
    let by: BTreeMap<_, _> = h
        .data_points
        .iter()
        .map(|p| {
            let point = HistogramPoint {
                count: p.count,
                sum: p.sum.unwrap_or_else(|| panic!("{}: no sum", metric.name)),
                bounds: p.explicit_bounds.clone(),
                bucket_counts: p.bucket_counts.clone(),
                start_unix_ns: p.start_time_unix_nano,
            };
            (attrs(&p.attributes), point)
        })
        .collect();
    assert_eq!(
        by.len(),
        h.data_points.len(),
        "{}: repeated attribute sets",
        metric.name
    );
    by
}

/// An attribute list as a map key; values as text.
pub fn attrs(list: &[KeyValue]) -> Attrs {
    list.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

fn text(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

#[derive(Default)]
struct Log {
    exports: Vec<Export>,
    errors: Vec<String>,
}

type Shared = Arc<Mutex<Log>>;

fn lock(log: &Shared) -> MutexGuard<'_, Log> {
    // A panic while holding the lock (in a test thread) must not hide the receiver's data.
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// An OTLP metrics receiver on 127.0.0.1; see the module documentation.
pub struct Receiver {
    protocol: Protocol,
    port: u16,
    log: Shared,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Receiver {
    /// Starts a receiver on a free loopback port.
    pub fn start(protocol: Protocol) -> Self {
        let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        let mut r = Self {
            protocol,
            port,
            log: Shared::default(),
            runtime: None,
        };
        r.serve(listener);
        r
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL to give goprobe's `--otlp-endpoint`: without a path, so that for HTTP goprobe
    /// appends `/v1/metrics` itself.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Whether the server is listening (not between [`stop`](Self::stop) and
    /// [`restart`](Self::restart)).
    pub fn is_running(&self) -> bool {
        self.runtime.is_some()
    }

    /// Shuts the server down: the listening socket is closed (connecting is refused) and open
    /// connections are dropped mid-stream. Recorded requests are kept.
    pub fn stop(&mut self) {
        let runtime = self.runtime.take().expect("receiver is running");
        // Drops every task: the accept loop with its listener and each connection's task.
        runtime.shutdown_timeout(Duration::from_secs(5));
    }

    /// Listens on the same port again after [`stop`](Self::stop).
    pub fn restart(&mut self) {
        assert!(self.runtime.is_none(), "receiver is already running");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut tries = 0;
        let listener = loop {
            // std sets SO_REUSEADDR, so connections of the previous server in TIME_WAIT do not
            // block the port; EADDRINUSE means something else got it for a moment.
            match StdListener::bind(addr) {
                Ok(l) => break l,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries < 50 => {
                    tries += 1;
                    thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("binding {addr} again: {e}"),
            }
        };
        self.serve(listener);
    }

    fn serve(&mut self, listener: StdListener) {
        listener.set_nonblocking(true).expect("non-blocking");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("otlp-{}-{}", self.protocol.flag(), self.port))
            .enable_all()
            .build()
            .expect("tokio runtime");
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener).expect("tokio listener")
        };
        let log = self.log.clone();
        match self.protocol {
            Protocol::Http => {
                runtime.spawn(serve_http(listener, log));
            }
            Protocol::Grpc => {
                let incoming = tonic::transport::server::TcpIncoming::from(listener);
                let service = MetricsServiceServer::new(Grpc(log.clone()));
                runtime.spawn(async move {
                    if let Err(e) = tonic::transport::Server::builder()
                        .add_service(service)
                        .serve_with_incoming(incoming)
                        .await
                    {
                        lock(&log).errors.push(format!("gRPC server: {e}"));
                    }
                });
            }
        }
        self.runtime = Some(runtime);
    }

    /// Every request received so far, in arrival order.
    pub fn exports(&self) -> Vec<Export> {
        lock(&self.log).exports.clone()
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        lock(&self.log).exports.len()
    }

    /// Requests the receiver rejected (wrong path or method, undecodable body), described.
    pub fn errors(&self) -> Vec<String> {
        lock(&self.log).errors.clone()
    }

    /// The last request.
    pub fn last(&self) -> Export {
        lock(&self.log)
            .exports
            .last()
            .cloned()
            .expect("no export received")
    }

    /// The resource attributes of the last request.
    pub fn resource(&self) -> BTreeMap<String, any_value::Value> {
        self.last().resource()
    }

    /// The last seen instance of metric `name`, over all requests.
    pub fn metric(&self, name: &str) -> Option<Metric> {
        lock(&self.log)
            .exports
            .iter()
            .rev()
            .find_map(|e| e.metric(name).cloned())
    }

    /// The last seen values of sum or gauge `name`, by attribute set.
    pub fn numbers(&self, name: &str) -> BTreeMap<Attrs, f64> {
        number_points(&self.require(name))
    }

    /// The sum over all attribute sets of the last seen values of sum `name`.
    pub fn total(&self, name: &str) -> f64 {
        self.numbers(name).values().sum()
    }

    /// The last seen points of histogram `name`, by attribute set.
    pub fn histograms(&self, name: &str) -> BTreeMap<Attrs, HistogramPoint> {
        histogram_points(&self.require(name))
    }

    fn require(&self, name: &str) -> Metric {
        self.metric(name)
            .unwrap_or_else(|| panic!("no metric {name}; seen: {:?}", self.names()))
    }

    /// The names of all metrics seen.
    pub fn names(&self) -> BTreeSet<String> {
        lock(&self.log)
            .exports
            .iter()
            .flat_map(|e| e.metrics().map(|m| m.name.clone()))
            .collect()
    }

    /// Waits up to `timeout` until at least `n` requests arrived in total.
    pub fn wait_count(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.count() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} OTLP exports arrived within {timeout:?}; errors: {:?}",
                self.count(),
                self.errors()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

struct Grpc(Shared);

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        // tonic has decoded the body already; one that does not decode never gets here and the
        // client sees the failure (goprobe counts it in goprobe.agent.export.failures).
        lock(&self.0).exports.push(Export {
            at: Instant::now(),
            request: request.into_inner(),
        });
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

async fn serve_http(listener: tokio::net::TcpListener, log: Shared) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                lock(&log).errors.push(format!("accept: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let log = log.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle_http(req, log.clone()));
            // A client closing its keep-alive connection ends this with an error; not ours.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle_http(
    req: Request<Incoming>,
    log: Shared,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, body: Vec<u8>| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/x-protobuf"),
        );
        Ok(r)
    };
    let what = format!("{} {}", req.method(), req.uri());
    let reject = |status: StatusCode, why: String| {
        lock(&log).errors.push(format!("{what}: {why}"));
        reply(status, Vec::new())
    };
    if req.uri().path() != "/v1/metrics" {
        return reject(StatusCode::NOT_FOUND, "not the OTLP metrics path".into());
    }
    if req.method() != Method::POST {
        return reject(StatusCode::METHOD_NOT_ALLOWED, "not a POST".into());
    }
    let header = |name| {
        req.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let content_type = header(hyper::header::CONTENT_TYPE);
    if content_type.as_deref() != Some("application/x-protobuf") {
        return reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content-type {content_type:?}"),
        );
    }
    if let Some(encoding) = header(hyper::header::CONTENT_ENCODING)
        && encoding != "identity"
    {
        // goprobe's exporter is built without compression features.
        return reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content-encoding {encoding}"),
        );
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reject(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    match ExportMetricsServiceRequest::decode(body) {
        Ok(request) => {
            lock(&log).exports.push(Export {
                at: Instant::now(),
                request,
            });
            reply(
                StatusCode::OK,
                ExportMetricsServiceResponse::default().encode_to_vec(),
            )
        }
        Err(e) => reject(StatusCode::BAD_REQUEST, format!("decoding: {e}")),
    }
}
