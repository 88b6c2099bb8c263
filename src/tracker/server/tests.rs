//! The poller against a tiny server: what lands in the store, how often each endpoint is asked,
//! and that stop wins.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::StatusCode as AxumStatus;
use axum::routing::get;

use super::samples::{METRICS, server_info};
use super::*;
use crate::tracker::{Timeline, Unit};

#[derive(Default)]
struct Hits {
    metrics: AtomicUsize,
    get_info: AtomicUsize,
    info: AtomicUsize,
}

/// A tiny server: `/metrics` (or 404), `/server_info` only (the newer name), counting hits.
async fn serve(with_metrics: bool, hits: Arc<Hits>) -> String {
    let h1 = hits.clone();
    let h2 = hits.clone();
    let h3 = hits;
    let app = Router::new()
        .route(
            "/metrics",
            get(move || async move {
                h1.metrics.fetch_add(1, Ordering::SeqCst);
                if with_metrics {
                    (AxumStatus::OK, METRICS)
                } else {
                    (AxumStatus::NOT_FOUND, "")
                }
            }),
        )
        .route(
            "/get_server_info",
            get(move || async move {
                h2.get_info.fetch_add(1, Ordering::SeqCst);
                AxumStatus::NOT_FOUND
            }),
        )
        .route(
            "/server_info",
            get(move || async move {
                h3.info.fetch_add(1, Ordering::SeqCst);
                axum::Json(server_info())
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/")
}

/// The status this source recorded in the timeline.
fn server_status(tl: &Timeline) -> &SourceStatus {
    tl.sources
        .iter()
        .find(|s| s.name == "server")
        .expect("status recorded")
}

async fn run_for(base: String, store: Store, run: Duration) -> Duration {
    run_until(base, store, run, || true).await
}

/// Polls for at least `run`, then until `done()` (at most 20 s: a loaded machine may give the
/// poller few ticks), and returns how long it took the poller to stop once asked.
async fn run_until(base: String, store: Store, run: Duration, done: impl Fn() -> bool) -> Duration {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(poll(
        base,
        reqwest::Client::new(),
        store,
        Duration::from_millis(10),
        rx,
    ));
    tokio::time::sleep(run).await;
    let give_up = Instant::now() + Duration::from_secs(20);
    while !done() && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = Instant::now();
    tx.send(true).expect("poller alive");
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("poller stops promptly")
        .expect("poller does not panic");
    asked.elapsed()
}

#[tokio::test]
async fn readings_land_in_the_store_and_info_is_read_rarely() {
    let hits = Arc::new(Hits::default());
    let base = serve(true, hits.clone()).await;
    let store = Store::new(10);
    let polled = hits.clone();
    let took = run_until(base, store.clone(), Duration::from_millis(300), move || {
        polled.metrics.load(Ordering::SeqCst) >= 6
    })
    .await;
    assert!(took < Duration::from_millis(1500), "stop took {took:?}");
    let tl = store.snapshot();
    let running = &tl.series["server.num_running_reqs"];
    assert!(running.points.len() >= 5, "{}", running.points.len());
    assert!(running.points.iter().all(|p| p.v == 3.0));
    assert_eq!(tl.series["server.token_capacity@rank:0"].unit, Unit::Count);
    assert!(tl.series.contains_key("server.mem.kvcache@rank:1"));
    let status = server_status(&tl);
    assert!(status.available);
    assert_eq!(status.note, None);
    assert_eq!(status.errors, 0);
    // The old name was tried once, then the new one remembered and read every 10th tick.
    assert_eq!(hits.get_info.load(Ordering::SeqCst), 1);
    let metrics = hits.metrics.load(Ordering::SeqCst);
    let info = hits.info.load(Ordering::SeqCst);
    assert!(
        info >= 1 && info <= metrics / INFO_EVERY as usize + 1,
        "info {info}, metrics {metrics}"
    );
}

#[tokio::test]
async fn absent_metrics_are_noted_once_and_not_retried_every_tick() {
    let hits = Arc::new(Hits::default());
    let base = serve(false, hits.clone()).await;
    let store = Store::new(10);
    run_for(base, store.clone(), Duration::from_millis(200)).await;
    assert_eq!(hits.metrics.load(Ordering::SeqCst), 1);
    let tl = store.snapshot();
    let status = server_status(&tl);
    assert_eq!(status.note.as_deref(), Some(METRICS_ABSENT));
    // Server info still answered.
    assert!(status.available);
    assert!(tl.series.keys().all(|k| !k.starts_with("server.num_")));
}

#[tokio::test]
async fn unreachable_server_is_noted_and_stop_still_works() {
    // Bind then drop: a port nothing listens on.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let store = Store::new(10);
    let took = run_for(
        format!("http://{addr}"),
        store.clone(),
        Duration::from_millis(100),
    )
    .await;
    assert!(took < Duration::from_millis(500), "stop took {took:?}");
    let tl = store.snapshot();
    let status = server_status(&tl);
    assert!(!status.available);
    assert!(
        status
            .note
            .as_deref()
            .is_some_and(|n| n.contains("--enable-metrics")),
        "{status:?}"
    );
    assert!(tl.series.is_empty());
}
