//! The process environment, read in this one place. What the library reads, and why:
//!
//! - the `MEMTEST_*` knobs (and `CUDA_VISIBLE_DEVICES`, `SGLANG_LOG_LEVEL`), only through
//!   [`ScenarioConfig::env_overrides`](crate::config::ScenarioConfig::env_overrides), where the
//!   caller layers them; everything below the configuration gets values, never variables
//!   (the reaper and the watchdog switches included);
//! - `MEMTEST_REAPER_FOR`, the reaper's marker, read before `main` by the process that is to
//!   become a reaper (an inter-process protocol, not a setting);
//! - `PATH` and `HOME`, to find the tools the harness runs (py-spy, Prometheus), and
//!   `MEMTEST_PROMETHEUS`, the Prometheus binary to use instead of the one on `PATH`.

use std::ffi::OsString;
use std::path::PathBuf;

/// The variable `name`, when it is set and valid Unicode.
pub(crate) fn get(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The variable `name`, when it is set.
pub(crate) fn get_os(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// `name` in the first folder of `PATH` that has it as a file.
pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&get_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The user's home folder (`HOME`).
pub(crate) fn home() -> Option<PathBuf> {
    get_os("HOME").map(PathBuf::from)
}
