//! The HTTP listener: `/metrics` (the [`Registry`] rendered), `/healthz` and `/readyz`, on a
//! thread of its own.

use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tracing::{debug, warn};

use super::prometheus::Registry;

/// The endpoint's thread; it stops serving when this is dropped.
pub struct Server {
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Serves `/metrics`, `/healthz` and `/readyz` from `registry` on `listener`, on a thread of its
/// own: the endpoint answers whatever the event loop does, from the start to the exit (while
/// the final report is built, and with the last values once the watch has ended).
pub fn spawn(listener: std::net::TcpListener, registry: Registry) -> std::io::Result<Server> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("goprobe-http".into())
        .spawn(move || {
            rt.block_on(async {
                tokio::select! {
                    () = serve(listener, registry) => {}
                    _ = stopped => {}
                }
            });
        })?;
    Ok(Server { _stop: stop })
}

/// Serves `/metrics` from `registry` on `listener` until the runtime stops.
pub async fn serve(listener: std::net::TcpListener, registry: Registry) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            warn!("Prometheus endpoint: {e}");
            return;
        }
    };
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!("Prometheus endpoint: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let registry = registry.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&req, &registry)) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!("Prometheus endpoint connection: {e}");
            }
        });
    }
}

fn respond<B>(req: &Request<B>, registry: &Registry) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method().as_str(), req.uri().path()) {
        ("GET", "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            registry.render(),
        ),
        ("GET", "/") => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "goprobe: metrics at /metrics, liveness at /healthz, readiness at /readyz\n".to_owned(),
        ),
        // Live while the event loop beats (the agent's, every 100 ms), and while stopping.
        ("GET", "/healthz") => match registry.stalled() {
            None => (
                StatusCode::OK,
                "text/plain; charset=utf-8",
                "ok\n".to_owned(),
            ),
            Some(d) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                format!(
                    "stuck: the event loop has not run for {:.0} s\n",
                    d.as_secs_f64()
                ),
            ),
        },
        // Ready once the BPF programs are loaded and the first scan of /proc is done.
        ("GET", "/readyz") if registry.ready() => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ready\n".to_owned(),
        ),
        ("GET", "/readyz") => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "not ready: loading probes or scanning processes\n".to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found; metrics are at /metrics\n".to_owned(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}
