//! A real Prometheus as a test fixture: the system's `prometheus` binary on a free loopback
//! port, a generated scrape config, its own TSDB in a temporary folder, ready when `/-/ready`
//! answers. It runs under [`ServerFixture`], so its lifecycle (process group, log, teardown on
//! drop) is the server fixture's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fixture::{FixtureError, ServerFixture, ServerSpec, ShutdownReport, WaitFor};

/// Why Prometheus could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    /// No `prometheus` binary.
    #[error(
        "no Prometheus server found (looked for {looked}): install it (`apt-get install -y prometheus`) or set MEMTEST_PROMETHEUS to its binary"
    )]
    NotInstalled {
        /// Where it was looked for.
        looked: String,
    },
    /// The configuration or data folder could not be written.
    #[error("failed to prepare Prometheus' folder {}", path.display())]
    Folder {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Launch or readiness failed (the fixture's error carries the log's tail).
    #[error(transparent)]
    Fixture(#[from] FixtureError),
}

/// The `prometheus` binary: `MEMTEST_PROMETHEUS`, else the first on `PATH`.
pub fn prometheus_binary() -> Option<PathBuf> {
    if let Some(p) = crate::util::env::get_os("MEMTEST_PROMETHEUS") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    crate::util::env::on_path("prometheus")
}

/// A running Prometheus that scrapes `targets`.
pub struct PrometheusServer {
    fixture: ServerFixture,
    _dir: tempfile::TempDir,
}

/// The scrape configuration: one job, `targets` (`host:port`) every `interval`.
fn config(targets: &[String], interval: Duration) -> String {
    let ms = interval.as_millis().max(10);
    let list = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "global:\n  scrape_interval: {ms}ms\n  scrape_timeout: {ms}ms\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: sglang\n    static_configs:\n      - targets: [{list}]\n"
    )
}

impl PrometheusServer {
    /// Start Prometheus scraping `targets` (`127.0.0.1:PORT`) every `interval` and wait until it
    /// is ready (within `startup`).
    ///
    /// # Errors
    /// [`PrometheusError`]: not installed, its folder not writable, or it did not get ready
    /// (the error carries the tail of its log).
    pub async fn start(
        targets: &[String],
        interval: Duration,
        startup: Duration,
    ) -> Result<Self, PrometheusError> {
        let bin = prometheus_binary().ok_or_else(|| PrometheusError::NotInstalled {
            looked: "MEMTEST_PROMETHEUS, then `prometheus` on PATH".into(),
        })?;
        let dir = tempfile::Builder::new()
            .prefix("memtest-prometheus-")
            .tempdir()
            .map_err(|source| PrometheusError::Folder {
                path: std::env::temp_dir(),
                source,
            })?;
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config(targets, interval)).map_err(|source| {
            PrometheusError::Folder {
                path: file.clone(),
                source,
            }
        })?;
        let arg = |flag: &str, p: &Path| format!("--{flag}={}", p.display());
        let spec = ServerSpec::command(
            bin,
            [
                arg("config.file", &file),
                arg("storage.tsdb.path", &dir.path().join("data")),
                "--web.listen-address={host}:{port}".to_owned(),
                "--storage.tsdb.retention.time=1d".to_owned(),
                "--log.level=warn".to_owned(),
            ],
        )
        .with_name("prometheus")
        .with_log_dir(dir.path())
        .with_wait_for(WaitFor::http_ok("/-/ready"))
        .with_startup_timeout(startup)
        .with_grace(Duration::from_secs(5));
        let fixture = ServerFixture::start(spec).await?;
        Ok(Self { fixture, _dir: dir })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        self.fixture.base_url()
    }

    /// The last lines of its log.
    pub fn log_tail(&self, n: usize) -> Vec<String> {
        self.fixture.log_tail(n)
    }

    /// Stop it (SIGTERM to its group, then SIGKILL after the grace) and remove its data.
    ///
    /// # Errors
    /// [`FixtureError`] when the teardown failed.
    pub async fn stop(self) -> Result<ShutdownReport, FixtureError> {
        self.fixture.stop().await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_scrape_config_names_every_target_and_a_timeout_within_the_interval() {
        let c = super::config(
            &["127.0.0.1:1".into(), "127.0.0.1:2".into()],
            std::time::Duration::from_millis(250),
        );
        assert!(c.contains("scrape_interval: 250ms") && c.contains("scrape_timeout: 250ms"));
        assert!(c.contains("targets: ['127.0.0.1:1', '127.0.0.1:2']"), "{c}");
    }
}
