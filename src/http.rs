//! The process's HTTP endpoint (`--metrics-addr`, 127.0.0.1:9898 by default):
//!
//! | path | what |
//! |---|---|
//! | `/` | the live status page (one self-contained HTML file, no external resources) |
//! | `/api/status` | the page's data ([`crate::status::Snapshot`]) as JSON |
//! | `/metrics` | Prometheus metrics ([`crate::metrics::Metrics`]) |
//! | `/healthz` | `ok` while the process runs (liveness) |
//! | `/readyz` | `ready` (200) while it does its work; otherwise 503 and a line per reason: not started, stopping, a partition that cannot be read (broker down, paused, silent), the sink retrying writes |
//!
//! It runs on its own thread and tokio runtime, away from the timely workers, and samples the
//! throughput history once a second. Nothing it serves contains a secret: the source and sink
//! descriptions are built without credentials (see `crate::security`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};

use crate::error::{Error, Result};
use crate::metrics::Stats;

const PAGE: &str = include_str!("status.html");

/// Binds `addr` now (so a taken port is reported before the dataflow starts) and serves from a
/// background thread. Returns the bound address (useful with port 0).
pub fn serve(addr: SocketAddr, stats: Arc<Stats>) -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        Error::Config(format!(
            "--metrics-addr {addr}: {e}; choose another address, or `off` to serve no metrics"
        ))
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("--metrics-addr {addr}: {e}")))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::Config(format!("--metrics-addr {addr}: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Config(format!("cannot start the HTTP server: {e}")))?;
    std::thread::Builder::new()
        .name("weir-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("HTTP server on {bound}: {e}");
                        return;
                    }
                };
                let sampler = Arc::clone(&stats);
                tokio::spawn(async move {
                    let mut every = tokio::time::interval(Duration::from_secs(1));
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    loop {
                        every.tick().await;
                        sampler.status.sample(sampler.totals());
                    }
                });
                if let Err(e) = axum::serve(listener, router(stats)).await {
                    tracing::error!("HTTP server on {bound}: {e}");
                }
            })
        })
        .map_err(|e| Error::Config(format!("cannot start the HTTP server: {e}")))?;
    tracing::info!(address = %bound, "serving the status page and /metrics");
    Ok(bound)
}

fn router(stats: Arc<Stats>) -> Router {
    let (metrics, status) = (Arc::clone(&stats), stats);
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get({
                let stats = Arc::clone(&metrics);
                move || async move {
                    match stats.status.readiness() {
                        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
                        Err(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready\n{}\n", why.join("\n")),
                        ),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let stats = Arc::clone(&metrics);
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        stats.metrics.encode(),
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/api/status",
            get(move || {
                let stats = Arc::clone(&status);
                async move {
                    (
                        [(header::CACHE_CONTROL, "no-store")],
                        Json(stats.status.snapshot(stats.totals())),
                    )
                        .into_response()
                }
            }),
        )
}
