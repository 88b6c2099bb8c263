//! The reference server: the embedded default target of the demo and the CI control.
//!
//! This module owns `sglang-memtest serve-reference` (and its hidden `reference-child`
//! processes): a real process speaking the SGLang HTTP subset the harness uses, which plants
//! memory leaks on demand. Every planted leak allocates real memory and writes it, so RSS,
//! `/dev/shm` usage or GPU memory really grows; every clean knob (bounded cache, warm-up step,
//! GPU allocate-and-free) really plateaus.
//!
//! Files: [`ReferenceArgs`] and validation in `args.rs`, routes in `http.rs`, shared state and
//! leak planting in `state.rs`, request bodies in `requests.rs`, host memory in `memory.rs`, the child processes in
//! `children.rs` (parent side) and `child.rs` (child side), images in `images.rs`, `/dev/shm`
//! in `shm.rs`, `/metrics` and `/v1/loads` in `metrics.rs`, the GPU in `cuda.rs` (behind the
//! `cuda` feature).

mod args;
mod child;
mod children;
#[cfg(feature = "cuda")]
mod cuda;
mod faults;
mod generation;
mod gpu;
mod http;
mod images;
mod memory;
mod metrics;
mod requests;
mod shm;
mod state;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::unistd::getppid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

pub use args::{ChildArgs, ReferenceArgs};
pub use faults::run_escape;

use children::ChildLink;
use gpu::GpuMemory;
use shm::ShmSegment;
use state::State;

/// What can stop the reference server (or one of its children).
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// `--error-rate` outside 0..=1.
    #[error("--error-rate must be between 0 and 1, got {rate}")]
    ErrorRateOutOfRange {
        /// The rate given.
        rate: f64,
    },
    /// `--children` above the limit.
    #[error("--children {children} is more than the {max} the reference server allows")]
    TooManyChildren {
        /// Children asked for.
        children: usize,
        /// The limit.
        max: usize,
    },
    /// `--leak-in-child` with no children.
    #[error("--leak-in-child needs child processes: add --children N (N >= 1)")]
    LeakInChildWithoutChildren,
    /// `--python-children` with no children.
    #[error("--python-children needs child processes: add --children N (N >= 1)")]
    PythonChildrenWithoutChildren,
    /// `--python-children` with a GPU knob: a Python child holds host leaks only.
    #[error("--python-children hold host leaks only: drop --python-children or the GPU knobs")]
    PythonChildGpu,
    /// The interpreter of `--python-children` does not run.
    #[error("--python-children {python}: {detail}; point it at a working Python 3 interpreter")]
    PythonChild {
        /// The interpreter given.
        python: String,
        /// What went wrong.
        detail: String,
    },
    /// `--leak-in-child INDEX` names a child that does not exist.
    #[error(
        "--leak-in-child {index} names no child: --children {children} makes children 0..{children}"
    )]
    LeakChildOutOfRange {
        /// The index given.
        index: usize,
        /// Children asked for.
        children: usize,
    },
    /// `--cache-bytes-per-request` without a cap.
    #[error("--cache-bytes-per-request needs --cache-cap-bytes (the cache's size limit)")]
    CacheBytesWithoutCap,
    /// A sawtooth period that leaves no sawtooth.
    #[error(
        "--sawtooth-period {period} is too short: the garbage must pile up for at least 2 requests before it is freed"
    )]
    SawtoothPeriodTooShort {
        /// The period asked for.
        period: u64,
    },
    /// `--cache-cap-bytes` without entries.
    #[error("--cache-cap-bytes needs --cache-bytes-per-request (what each request adds)")]
    CacheCapWithoutBytes,
    /// A cache entry would not fit in the cache.
    #[error(
        "--cache-bytes-per-request {per_request} is larger than --cache-cap-bytes {cap}; lower it or raise the cap"
    )]
    CacheEntryOverCap {
        /// Bytes per request.
        per_request: u64,
        /// The cap.
        cap: u64,
    },
    /// The `/dev/shm` knobs need `/dev/shm`.
    #[error("the /dev/shm knobs need {}, which does not exist on this machine", path.display())]
    NoShm {
        /// The missing directory.
        path: PathBuf,
    },
    /// `--log-line` empty or of several lines.
    #[error("--log-line must be one line of text (it is printed into the server's log)")]
    BadLogLine,
    /// `--log-line-after` without a line to print.
    #[error("--log-line-after needs --log-line TEXT (the line to print)")]
    LogLineAfterWithoutLine,
    /// `--context-length 0`.
    #[error("--context-length must be at least 1 token")]
    ZeroContextLength,
    /// `--api-key` empty or with spaces.
    #[error("--api-key must be one word (no spaces), e.g. --api-key s3cret")]
    BadApiKey,
    /// `setsid` failed.
    #[error("failed to leave the process group (setsid)")]
    Setsid {
        /// The OS error.
        #[source]
        source: nix::Error,
    },
    /// GPU knobs on a build without the `cuda` feature.
    #[error("this build has no GPU support: rebuild with `--features cuda`")]
    NoGpuSupport,
    /// GPU knobs on a machine without the CUDA driver.
    #[cfg(feature = "cuda")]
    #[error("GPU knobs need the CUDA driver (libcuda.so.1), which was not found on this machine")]
    CudaDriverMissing,
    /// A CUDA call failed.
    #[cfg(feature = "cuda")]
    #[error("failed to {what}")]
    Cuda {
        /// What was being done.
        what: &'static str,
        /// The driver's error.
        #[source]
        source: cudarc::driver::DriverError,
    },
    /// An allocation the knobs asked for could not be made.
    #[error("cannot allocate {bytes} bytes: lower the byte knobs")]
    OutOfMemory {
        /// Bytes asked for.
        bytes: u64,
    },
    /// A `/dev/shm` file could not be made or written.
    #[error("failed to write shared-memory file {}: is /dev/shm full?", path.display())]
    Shm {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `prctl` failed.
    #[error("failed to {what} with prctl")]
    Prctl {
        /// What was being set.
        what: &'static str,
        /// The OS error.
        #[source]
        source: nix::Error,
    },
    /// The process that started this one is already gone.
    #[error("the parent process exited before this one was ready; exiting")]
    ParentGone,
    /// A child title that cannot be a process name.
    #[error("child title {title:?} contains a NUL byte")]
    BadTitle {
        /// The title.
        title: String,
    },
    /// Installing the SIGTERM/SIGINT handlers failed.
    #[error("failed to install the SIGTERM/SIGINT handlers")]
    Signals {
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The port could not be bound.
    #[error(
        "failed to listen on {addr}: is another server using the port? pick another --port, or --port 0 for a free one"
    )]
    Bind {
        /// `host:port`.
        addr: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server stopped with an error.
    #[error("the HTTP server failed")]
    Serve {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A child could not be started.
    #[error("failed to start child {index} ({title})")]
    SpawnChild {
        /// Its index.
        index: usize,
        /// Its title.
        title: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Talking to a child failed.
    #[error("failed to talk to child {index} (pid {pid}) over its pipes")]
    ChildIo {
        /// Its index.
        index: usize,
        /// Its pid.
        pid: u32,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A child broke the protocol or died.
    #[error("child {index} (pid {pid}) is not usable: {message}")]
    ChildProtocol {
        /// Its index.
        index: usize,
        /// Its pid.
        pid: u32,
        /// What happened.
        message: String,
    },
    /// A child answered `err`.
    #[error("child {index} (pid {pid}) refused `{command}`: {message}")]
    ChildRefused {
        /// Its index.
        index: usize,
        /// Its pid.
        pid: u32,
        /// The command.
        command: String,
        /// The child's message.
        message: String,
    },
    /// The child's pipe to its parent broke.
    #[error("failed to talk to the parent over stdin/stdout")]
    ParentPipe {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A background task panicked or was cancelled.
    #[error("a background task failed: {message}")]
    Task {
        /// The join error, as text.
        message: String,
    },
}

/// Runs the reference server until SIGTERM or SIGINT, then stops its children and returns.
///
/// Prints `listening on http://HOST:PORT` on stdout once the port is bound. Must run on the
/// thread that lives as long as the server (e.g. inside `Runtime::block_on` on the main thread):
/// the children are spawned from it and their parent-death signal is tied to that thread.
///
/// # Errors
///
/// Invalid knobs (before anything is bound or spawned), a port that cannot be bound, a child
/// that cannot be started, or a CUDA context that cannot be created.
pub async fn serve(args: ReferenceArgs) -> Result<(), ReferenceError> {
    args.validate()?;
    die_with_parent()?;
    memory::pin_mmap_threshold();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut term =
        signal(SignalKind::terminate()).map_err(|source| ReferenceError::Signals { source })?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|source| ReferenceError::Signals { source })?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    // Dropped (removed) at the end of this function: only a clean shutdown removes it.
    let segment = match args.shm_segment_bytes {
        0 => None,
        bytes => {
            let segment = ShmSegment::create(bytes)?;
            tracing::info!(path = %segment.path().display(), bytes, "sparse shm segment created");
            Some(segment)
        }
    };
    if args.escape_child {
        let pid = faults::escape_child().await?;
        tracing::info!(pid, "a process left the group (--escape-child)");
    }
    let mut children = Vec::with_capacity(args.children);
    let spawned = spawn_children(&args, &mut children).await;
    let result = match spawned {
        Ok(()) => serve_http(args, children, stopped).await,
        Err(e) => {
            shutdown_children(&children).await;
            Err(e)
        }
    };
    drop(segment);
    result
}

/// Sets `PR_SET_PDEATHSIG(SIGTERM)` and exits if the parent already died (race with prctl).
fn die_with_parent() -> Result<(), ReferenceError> {
    let before = getppid();
    prctl::set_pdeathsig(Signal::SIGTERM).map_err(|source| ReferenceError::Prctl {
        what: "set the parent-death signal",
        source,
    })?;
    if getppid() != before {
        return Err(ReferenceError::ParentGone);
    }
    Ok(())
}

async fn spawn_children(
    args: &ReferenceArgs,
    children: &mut Vec<ChildLink>,
) -> Result<(), ReferenceError> {
    let python = match &args.python_children {
        Some(p) => Some(children::resolve_python(p).await?),
        None => None,
    };
    for index in 0..args.children {
        let init_gpu = args.wants_gpu() && args.leak_in_child == Some(index);
        let child = ChildLink::spawn(index, args.children, init_gpu, python.as_deref()).await?;
        tracing::info!(
            index,
            pid = child.pid(),
            title = child.title(),
            "child started"
        );
        children.push(child);
    }
    Ok(())
}

async fn shutdown_children(children: &[ChildLink]) {
    for child in children {
        child.shutdown().await;
    }
}

async fn serve_http<F, Fut>(
    args: ReferenceArgs,
    children: Vec<ChildLink>,
    stopped: F,
) -> Result<(), ReferenceError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let gpu = if args.wants_gpu() && args.leak_in_child.is_none() {
        Some(GpuMemory::new()?)
    } else {
        None
    };
    let state = Arc::new(State::new(args, children, gpu));
    if state.args.leak_bytes_per_second > 0 {
        let leaky = Arc::clone(&state);
        tokio::spawn(async move {
            // Ten slices a second, so the growth is smooth at the tracker's 100 ms rate.
            let slice = leaky.args.leak_bytes_per_second.div_ceil(10);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                if leaky.leak_time_slice(slice).is_err() {
                    break;
                }
            }
        });
    }
    let result = bind_and_serve(&state, stopped).await;
    shutdown_children(&state.children).await;
    result
}

async fn bind_and_serve<F, Fut>(state: &Arc<State>, stopped: F) -> Result<(), ReferenceError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let args = &state.args;
    if args.startup_delay_ms > 0 {
        // Like an engine loading weights; a signal during the wait still stops cleanly.
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(args.startup_delay_ms)) => {}
            () = stopped() => return Ok(()),
        }
    }
    let addr = format!("{}:{}", args.host, args.port);
    let bind_err = |source| ReferenceError::Bind {
        addr: addr.clone(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    {
        // The fixture and the tests read this line to learn the port: flush it at once.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{local}");
        let _ = out.flush();
    }
    tracing::info!(%local, "reference server ready");
    if state.args.log_line_after == Some(0) {
        state.print_log_line();
    }
    // Without TCP_NODELAY each streamed event waits for the client's delayed ACK (~40 ms):
    // streams would arrive all at once and no abort or disconnect could land mid-stream.
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, http::router(Arc::clone(state)))
        .with_graceful_shutdown(stopped())
        .await
        .map_err(|source| ReferenceError::Serve { source })
}

/// The main of a `reference-child` process: titles itself, dies with its parent, and holds
/// memory on the parent's behalf until its stdin closes.
///
/// # Errors
///
/// The title or parent-death signal cannot be set, the parent is already gone, the CUDA
/// context cannot be created (`--init-gpu`), or the pipes to the parent break.
pub fn run_child(args: ChildArgs) -> Result<(), ReferenceError> {
    child::run(args)
}
