//! Stacks of the guilty process on a leak: `py-spy dump --pid P` (every Python thread's stack),
//! written into the run folder. py-spy reads the process from outside (ptrace): the server needs
//! no flag and no restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long one `py-spy dump` may take (it pauses the process for a moment).
const DUMP_TIMEOUT: Duration = Duration::from_secs(30);

/// The folder `.ci/run` installs py-spy into (a virtual environment), under the home folder.
pub const TOOLS_DIR: &str = ".cache/sglang-memtest/tools";

/// Which py-spy to use for stack snapshots (`--py-spy` / `MEMTEST_PY_SPY`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PySpy {
    /// `py-spy` on `PATH`, else `~/.cache/sglang-memtest/tools/bin/py-spy`.
    #[default]
    Auto,
    /// This executable.
    Path(PathBuf),
    /// No stack snapshots.
    Off,
}

impl std::str::FromStr for PySpy {
    type Err = crate::util::Invalid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" => Err(crate::util::Invalid::from(
                "auto, off or the path of a py-spy executable",
            )),
            "auto" => Ok(PySpy::Auto),
            "off" => Ok(PySpy::Off),
            p => Ok(PySpy::Path(PathBuf::from(p))),
        }
    }
}

impl PySpy {
    /// The executable, or the one line that says what to install (`Ok(None)`: off).
    ///
    /// # Errors
    /// The sentence for the report when no py-spy is found.
    pub fn locate(&self) -> Result<Option<PathBuf>, crate::util::Invalid> {
        match self {
            PySpy::Off => Ok(None),
            PySpy::Path(p) if p.is_file() => Ok(Some(p.clone())),
            PySpy::Path(p) => Err(crate::util::Invalid(format!(
                "no stack snapshot: py-spy {} does not exist (--py-spy / MEMTEST_PY_SPY)",
                p.display()
            ))),
            PySpy::Auto => crate::util::env::on_path("py-spy")
                .or_else(|| {
                    let p = crate::util::env::home()?.join(TOOLS_DIR).join("bin/py-spy");
                    p.is_file().then_some(p)
                })
                .map(Some)
                .ok_or_else(|| {
                    crate::util::Invalid::from("no stack snapshot: py-spy is not installed — `pip install py-spy` (or `python3 -m venv ~/.cache/sglang-memtest/tools && ~/.cache/sglang-memtest/tools/bin/pip install py-spy`), or point --py-spy at it")
                }),
        }
    }
}

/// One stack snapshot of one process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackSnapshot {
    /// Host PID.
    pub pid: u32,
    /// Role or name of the process.
    pub label: String,
    /// The command that took it (`py-spy dump --pid 123`).
    pub command: String,
    /// The file holding its output (and errors), in the run folder.
    pub file: Option<PathBuf>,
    /// Whether the tool produced stacks.
    pub ok: bool,
    /// Why not, in one sentence that says what to do.
    pub message: Option<String>,
}

/// `py-spy dump --pid PID` into `dir/<stem>.py-spy.<label>.<pid>.txt`.
pub async fn py_spy_dump(
    py_spy: &Path,
    pid: u32,
    label: &str,
    dir: &Path,
    stem: &str,
) -> StackSnapshot {
    let command = format!("{} dump --pid {pid}", py_spy.display());
    let safe: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let path = dir.join(format!("{stem}.py-spy.{safe}.{pid}.txt"));
    let run = tokio::process::Command::new(py_spy)
        .args(["dump", "--pid", &pid.to_string()])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let (ok, message, text) = match tokio::time::timeout(DUMP_TIMEOUT, run).await {
        Err(_) => (
            false,
            Some(format!(
                "py-spy did not finish within {} s on pid {pid}",
                DUMP_TIMEOUT.as_secs()
            )),
            String::new(),
        ),
        Ok(Err(e)) => (
            false,
            Some(format!("could not run {command}: {e}")),
            String::new(),
        ),
        Ok(Ok(out)) => {
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            let text = format!("$ {command}\n{stdout}{stderr}");
            if out.status.success() {
                (true, None, text)
            } else {
                (false, Some(failure(pid, &stderr, &stdout)), text)
            }
        }
    };
    let file = (!text.is_empty())
        .then(|| crate::util::write_atomic(&path, text.as_bytes()).ok())
        .flatten()
        .map(|()| path);
    StackSnapshot {
        pid,
        label: label.to_owned(),
        command,
        file,
        ok,
        message,
    }
}

/// The sentence for a failed dump, from what py-spy printed.
pub(crate) fn failure(pid: u32, stderr: &str, stdout: &str) -> String {
    let all = format!("{stderr}\n{stdout}");
    let lower = all.to_lowercase();
    if lower.contains("permission denied") || lower.contains("operation not permitted") {
        let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
            .map(|s| format!(" (kernel.yama.ptrace_scope is {})", s.trim()))
            .unwrap_or_default();
        return format!(
            "py-spy may not read pid {pid}: ptrace was refused{scope}; run the harness as root, or `sudo sysctl kernel.yama.ptrace_scope=0`, or give py-spy CAP_SYS_PTRACE (in a container: --cap-add SYS_PTRACE)"
        );
    }
    if lower.contains("failed to find python version")
        || lower.contains("failed to find a python interpreter")
    {
        return format!(
            "pid {pid} is not a Python process: py-spy reads Python stacks only (use gdb or perf for native code)"
        );
    }
    if lower.contains("no such process") {
        return format!("pid {pid} exited before py-spy could read it");
    }
    let first = stderr
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output");
    format!("py-spy failed on pid {pid}: {}", first.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_parses() {
        assert_eq!("auto".parse::<PySpy>(), Ok(PySpy::Auto));
        assert_eq!("off".parse::<PySpy>(), Ok(PySpy::Off));
        assert_eq!(
            "/opt/py-spy".parse::<PySpy>(),
            Ok(PySpy::Path("/opt/py-spy".into()))
        );
        assert!("".parse::<PySpy>().is_err());
    }

    #[test]
    fn a_missing_path_says_so_and_off_is_off() {
        let e = PySpy::Path("/nonexistent/py-spy".into())
            .locate()
            .unwrap_err();
        assert!(e.0.contains("/nonexistent/py-spy does not exist"), "{e}");
        assert_eq!(PySpy::Off.locate(), Ok(None));
    }

    #[test]
    fn failures_become_sentences_that_say_what_to_do() {
        let e = failure(42, "Error: Permission denied (os error 13)", "");
        assert!(
            e.contains("ptrace was refused") && e.contains("ptrace_scope=0"),
            "{e}"
        );
        let e = failure(
            42,
            "Error: Failed to find python version from target process",
            "",
        );
        assert!(e.contains("not a Python process"), "{e}");
        let e = failure(42, "Error: something else\nmore", "");
        assert_eq!(e, "py-spy failed on pid 42: Error: something else");
    }
}
