//! Generating tokens over time, so that requests can be streamed, aborted (`/abort_request` by
//! `rid`, or `abort_all`) and abandoned by their client mid-stream — and the leaks planted on
//! exactly those paths (`--leak-bytes-per-{rejected,abort,disconnect,stream}`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Every token was generated.
    Finished,
    /// `/abort_request` ended it.
    Aborted,
    /// The client went away mid-stream.
    Gone,
}

/// The abort switch of one running generation.
#[derive(Debug, Default)]
pub(crate) struct AbortFlag {
    set: AtomicBool,
    notify: Notify,
}

impl AbortFlag {
    fn abort(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// Running generations by internal id: their `rid` and abort switch.
type Running = HashMap<u64, (Option<String>, Arc<AbortFlag>)>;

/// Running generations by id, with their `rid`; counts of each error path.
#[derive(Debug, Default)]
pub(crate) struct Paths {
    running: Mutex<Running>,
    next: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) aborted: AtomicU64,
    pub(crate) disconnected: AtomicU64,
    pub(crate) streamed: AtomicU64,
}

/// A registered generation: deregistered when dropped.
pub(crate) struct Registration<'a> {
    paths: &'a Paths,
    id: u64,
    pub(crate) flag: Arc<AbortFlag>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.paths
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl Paths {
    /// Registers a generation under `rid` so `/abort_request` can reach it.
    pub(crate) fn register(&self, rid: Option<String>) -> Registration<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let flag = Arc::new(AbortFlag::default());
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, (rid, Arc::clone(&flag)));
        Registration {
            paths: self,
            id,
            flag,
        }
    }

    /// Aborts the generations whose `rid` is `rid` (or every one with `all`); how many.
    pub(crate) fn abort(&self, rid: Option<&str>, all: bool) -> usize {
        let running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut n = 0;
        for (r, flag) in running.values() {
            if all || (rid.is_some() && r.as_deref() == rid) {
                flag.abort();
                n += 1;
            }
        }
        n
    }
}

/// Generates `tokens` tokens `delay` apart, calling `emit(i)` after each (`false` from it: the
/// client is gone). Stops early on an abort. Sleeps only when ahead of schedule by a
/// millisecond or more (the timer's grain), so short delays cost what they say on average.
pub(crate) async fn generate<F, Fut>(
    tokens: u64,
    delay: Duration,
    flag: &AbortFlag,
    mut emit: F,
) -> Ended
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    for i in 0..tokens {
        if flag.is_set() {
            return Ended::Aborted;
        }
        let due = start + delay.saturating_mul(u32::try_from(i + 1).unwrap_or(u32::MAX));
        if due > Instant::now() + Duration::from_millis(1) || (i + 1 == tokens && !delay.is_zero())
        {
            tokio::select! {
                () = tokio::time::sleep_until(due.into()) => {}
                () = flag.wait() => return Ended::Aborted,
            }
        }
        if !emit(i).await {
            return Ended::Gone;
        }
    }
    if flag.is_set() {
        Ended::Aborted
    } else {
        Ended::Finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn aborts_reach_the_generation_by_rid_or_all() {
        let paths = Paths::default();
        let a = paths.register(Some("a".into()));
        let b = paths.register(None);
        assert_eq!(paths.abort(Some("zzz"), false), 0);
        assert_eq!(paths.abort(Some("a"), false), 1);
        let ended = generate(1000, Duration::from_millis(1), &a.flag, |_| async { true }).await;
        assert_eq!(ended, Ended::Aborted);
        assert_eq!(paths.abort(None, true), 2);
        assert!(b.flag.is_set());
        drop((a, b));
        assert_eq!(paths.abort(None, true), 0);
    }

    #[tokio::test]
    async fn a_gone_client_stops_the_generation() {
        let paths = Paths::default();
        let r = paths.register(None);
        let ended = generate(100, Duration::ZERO, &r.flag, |i| async move { i < 3 }).await;
        assert_eq!(ended, Ended::Gone);
        let ended = generate(5, Duration::ZERO, &r.flag, |_| async { true }).await;
        assert_eq!(ended, Ended::Finished);
    }
}
