//! The OTLP receiver the end-to-end tests (otlp.rs) rely on does what they assume: it decodes
//! real OTLP requests, rejects and records anything else, and its stop and restart really close
//! and reopen the port. No goprobe here, and no root needed.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        metrics_service_client::MetricsServiceClient,
    },
    common::v1::{AnyValue, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
    },
    resource::v1::Resource,
};
use prost::Message as _;
use support::otlp::{Attrs, Protocol, Receiver};

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn string(s: &str) -> any_value::Value {
    any_value::Value::StringValue(s.into())
}

/// A request as an OTLP exporter builds it: one resource, a counter of `value` and a histogram.
fn sample(value: i64) -> ExportMetricsServiceRequest {
    let counter = Metric {
        name: "test.counter".into(),
        unit: "{thing}".into(),
        data: Some(Data::Sum(Sum {
            data_points: vec![NumberDataPoint {
                attributes: vec![kv("k", string("v"))],
                value: Some(number_data_point::Value::AsInt(value)),
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let histogram = Metric {
        name: "test.duration".into(),
        unit: "s".into(),
        data: Some(Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                count: 3,
                sum: Some(0.5),
                explicit_bounds: vec![0.1, 1.0],
                bucket_counts: vec![1, 2, 0],
                start_time_unix_nano: 42,
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", string("sample")),
                    kv("process.pid", any_value::Value::IntValue(7)),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![counter, histogram],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// One HTTP/1.1 request on a fresh connection: the status code and the body.
fn post(port: u16, path: &str, content_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response).expect("response");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("status line: {head}"));
    (status, response[split + 4..].to_vec())
}

const PROTOBUF: &str = "application/x-protobuf";

#[test]
fn http_receiver_decodes_rejects_and_restarts() {
    let mut r = Receiver::start(Protocol::Http);
    let port = r.port();

    let (status, body) = post(port, "/v1/metrics", PROTOBUF, &sample(7).encode_to_vec());
    assert_eq!(status, 200);
    ExportMetricsServiceResponse::decode(&body[..]).expect("an ExportMetricsServiceResponse");
    assert_eq!(r.count(), 1);
    assert_eq!(r.resource()["service.name"], string("sample"));
    assert_eq!(r.resource()["process.pid"], any_value::Value::IntValue(7));
    let attrs: Attrs = BTreeMap::from([("k".into(), "v".into())]);
    assert_eq!(r.numbers("test.counter"), BTreeMap::from([(attrs, 7.0)]));
    let h = &r.histograms("test.duration")[&Attrs::new()];
    assert_eq!(
        (h.count, h.sum, h.start_unix_ns),
        (3, 0.5, 42),
        "histogram point"
    );
    assert_eq!(
        (h.bounds.as_slice(), h.bucket_counts.as_slice()),
        ([0.1, 1.0].as_slice(), [1, 2, 0].as_slice())
    );
    assert_eq!(
        r.names().into_iter().collect::<Vec<_>>(),
        ["test.counter", "test.duration"]
    );
    assert!(r.errors().is_empty(), "{:?}", r.errors());

    // A length prefix of 5 with 3 bytes behind it: not a protobuf message.
    assert_eq!(post(port, "/v1/metrics", PROTOBUF, b"\x0a\x05abc").0, 400);
    assert_eq!(post(port, "/v1/traces", PROTOBUF, b"").0, 404);
    assert_eq!(
        post(port, "/v1/metrics", "application/json", b"{}").0,
        415,
        "OTLP/JSON is not what goprobe sends"
    );
    assert_eq!(r.errors().len(), 3, "{:?}", r.errors());
    assert_eq!(r.count(), 1, "rejected requests are not exports");

    r.stop();
    let refused = TcpStream::connect(("127.0.0.1", port)).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    r.restart();
    assert_eq!(r.port(), port);
    assert_eq!(
        post(port, "/v1/metrics", PROTOBUF, &sample(9).encode_to_vec()).0,
        200
    );
    assert_eq!(r.count(), 2);
    assert_eq!(r.total("test.counter"), 9.0, "the last export's value");
}

#[test]
fn grpc_receiver_serves_stops_and_restarts() {
    let mut r = Receiver::start(Protocol::Grpc);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut client = rt
        .block_on(MetricsServiceClient::connect(r.endpoint()))
        .expect("connect");
    let mut export = |value| {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), client.export(sample(value))).await
        })
        .expect("an answer within 10 s")
    };
    export(7).expect("export");
    assert_eq!(r.count(), 1);
    assert_eq!(r.total("test.counter"), 7.0);

    // The client's HTTP/2 connection is open: stop must drop it, not only the listener.
    r.stop();
    let err = export(8).expect_err("no server");
    eprintln!("export while stopped: {err}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", r.port())).is_err(),
        "port still open"
    );
    r.restart();
    // The same client reconnects, as goprobe's exporter must.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while export(9).is_err() {
        assert!(std::time::Instant::now() < deadline, "no reconnect");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(r.count(), 2);
    assert_eq!(r.total("test.counter"), 9.0);
    assert!(r.errors().is_empty(), "{:?}", r.errors());
}
