//! The parent's side of the child processes: titles, spawning, the line protocol, teardown.
//!
//! Protocol (parent → child on the child's stdin, one command per line; the child answers one
//! line on stdout): `leak N`, `gpu-leak N`, `gpu-alloc N`, `flush`, `ping`. Answers: `ok`, or
//! `err <message>`. The child first prints `ready` once its title and parent-death signal are
//! set. The parent waits for every answer before it answers the HTTP request, so a memory
//! sample taken after a response already sees the allocation. Closing stdin asks the child to
//! exit.

use std::fmt;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;

use super::ReferenceError;

/// The Python child (`--python-children`): argv is `[title, parent pid]`.
const PYTHON_CHILD: &str = include_str!("python_child.py");

/// `python -c` runs this, with the child's source as its first argument: compiled under its
/// file's name, so stacks and allocation sites (`--py-heap`) say `python_child.py:22`, not
/// `<string>:22`.
const PYTHON_CHILD_RUNNER: &str =
    "import sys; exec(compile(sys.argv.pop(1), 'python_child.py', 'exec'))";

/// The real interpreter behind `python` (a pyenv shim or a venv link resolved by asking it), so
/// the child's argv[0] can be its title and py-spy finds Python in the process itself.
pub(crate) async fn resolve_python(python: &str) -> Result<std::path::PathBuf, ReferenceError> {
    let err = |detail: String| ReferenceError::PythonChild {
        python: python.to_owned(),
        detail,
    };
    let out = Command::new(python)
        .args(["-c", "import sys; print(sys.executable)"])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| err(format!("cannot run it ({e})")))?;
    let exe = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || exe.is_empty() {
        return Err(err(format!(
            "it did not say where it lives ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    // A venv's python is a link to the base interpreter: the child needs only the stdlib.
    Ok(std::fs::canonicalize(&exe).unwrap_or_else(|_| exe.into()))
}

/// How long a child gets to exit after its stdin closes before it is killed.
const CHILD_GRACE: Duration = Duration::from_secs(2);

/// How long a child gets to say `ready` after it is spawned.
const CHILD_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The title of child `index` among `count`, as SGLang names its processes: with two or more
/// children the last is `sglang::detokenizer`; the others are schedulers, titled
/// `sglang::scheduler` when there is one (SGLang at TP 1) and `sglang::scheduler_TP{i}` when
/// there are several.
pub(crate) fn child_title(index: usize, count: usize) -> String {
    let schedulers = if count >= 2 { count - 1 } else { count };
    if index >= schedulers {
        "sglang::detokenizer".to_owned()
    } else if schedulers == 1 {
        "sglang::scheduler".to_owned()
    } else {
        format!("sglang::scheduler_TP{index}")
    }
}

/// One command of the parent→child protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildCommand {
    /// Allocate, write and keep N host bytes.
    Leak(u64),
    /// Allocate, set and keep N GPU bytes.
    GpuLeak(u64),
    /// Allocate, set, synchronize and free N GPU bytes.
    GpuAlloc(u64),
    /// Give freed memory back to the OS.
    Flush,
    /// Answer `ok` (liveness).
    Ping,
}

impl fmt::Display for ChildCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Leak(n) => write!(f, "leak {n}"),
            Self::GpuLeak(n) => write!(f, "gpu-leak {n}"),
            Self::GpuAlloc(n) => write!(f, "gpu-alloc {n}"),
            Self::Flush => f.write_str("flush"),
            Self::Ping => f.write_str("ping"),
        }
    }
}

impl std::str::FromStr for ChildCommand {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or_default();
        let mut bytes = || -> Result<u64, String> {
            let word = words
                .next()
                .ok_or_else(|| format!("`{verb}` needs a byte count"))?;
            word.parse()
                .map_err(|_| format!("`{word}` is not a byte count"))
        };
        let command = match verb {
            "leak" => Self::Leak(bytes()?),
            "gpu-leak" => Self::GpuLeak(bytes()?),
            "gpu-alloc" => Self::GpuAlloc(bytes()?),
            "flush" => Self::Flush,
            "ping" => Self::Ping,
            other => return Err(format!("unknown command `{other}`")),
        };
        match words.next() {
            None => Ok(command),
            Some(extra) => Err(format!("unexpected `{extra}` after `{verb}`")),
        }
    }
}

struct ChildIo {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// A running child: its pid, title and the pipe pair, one command at a time.
pub(crate) struct ChildLink {
    index: usize,
    pid: u32,
    title: String,
    /// `None` once shutdown closed the pipes.
    io: Mutex<Option<ChildIo>>,
    process: Mutex<Child>,
}

impl ChildLink {
    /// Spawns child `index` of `count`.
    ///
    /// Must run on the thread that lives as long as the server: `PR_SET_PDEATHSIG` in the child
    /// fires when the *thread* that forked it exits.
    pub(crate) async fn spawn(
        index: usize,
        count: usize,
        init_gpu: bool,
        python: Option<&std::path::Path>,
    ) -> Result<Self, ReferenceError> {
        let title = child_title(index, count);
        let spawn_err = |source| ReferenceError::SpawnChild {
            index,
            title: child_title(index, count),
            source,
        };
        let mut cmd = match python {
            // The same protocol in Python: a process py-spy can read.
            Some(python) => {
                let mut cmd = Command::new(python);
                cmd.arg0(&title)
                    .arg("-c")
                    .arg(PYTHON_CHILD_RUNNER)
                    .arg(PYTHON_CHILD)
                    .arg(&title)
                    .arg(std::process::id().to_string());
                cmd
            }
            None => {
                let exe = std::env::current_exe().map_err(spawn_err)?;
                let mut cmd = Command::new(exe);
                // argv[0] is the title so that /proc/PID/cmdline starts with it, as SGLang's does.
                cmd.arg0(&title)
                    .arg("reference-child")
                    .arg("--index")
                    .arg(index.to_string())
                    .arg("--title")
                    .arg(&title)
                    .arg("--parent-pid")
                    .arg(std::process::id().to_string());
                cmd
            }
        };
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Safety net only: shutdown() closes stdin and waits first.
            .kill_on_drop(true);
        if init_gpu {
            cmd.arg("--init-gpu");
        }
        let mut process = cmd.spawn().map_err(spawn_err)?;
        let pid = process.id().unwrap_or_default();
        let (Some(stdin), Some(stdout)) = (process.stdin.take(), process.stdout.take()) else {
            return Err(ReferenceError::ChildProtocol {
                index,
                pid,
                message: "its pipes were not created".to_owned(),
            });
        };
        let link = Self {
            index,
            pid,
            title,
            io: Mutex::new(Some(ChildIo {
                stdin,
                stdout: BufReader::new(stdout),
            })),
            process: Mutex::new(process),
        };
        match tokio::time::timeout(CHILD_READY_TIMEOUT, link.read_answer()).await {
            Ok(Ok(line)) if line == "ready" => Ok(link),
            Ok(Ok(line)) => {
                Err(link.protocol_error(format!("it said `{line}` instead of `ready`")))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(link.protocol_error(format!(
                "it did not say `ready` within {CHILD_READY_TIMEOUT:?}"
            ))),
        }
    }

    /// The child's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The child's title.
    pub(crate) fn title(&self) -> &str {
        &self.title
    }

    fn protocol_error(&self, message: String) -> ReferenceError {
        ReferenceError::ChildProtocol {
            index: self.index,
            pid: self.pid,
            message,
        }
    }

    fn io_error(&self, source: std::io::Error) -> ReferenceError {
        ReferenceError::ChildIo {
            index: self.index,
            pid: self.pid,
            source,
        }
    }

    async fn read_answer(&self) -> Result<String, ReferenceError> {
        let mut guard = self.io.lock().await;
        let io = guard
            .as_mut()
            .ok_or_else(|| self.protocol_error("it is shutting down".to_owned()))?;
        read_line(self, io).await
    }

    /// Sends one command and waits for its answer.
    pub(crate) async fn send(&self, command: ChildCommand) -> Result<(), ReferenceError> {
        // One command in flight per child: answers are matched to commands by order.
        let mut guard = self.io.lock().await;
        let io = guard
            .as_mut()
            .ok_or_else(|| self.protocol_error("it is shutting down".to_owned()))?;
        let line = format!("{command}\n");
        io.stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| self.io_error(e))?;
        io.stdin.flush().await.map_err(|e| self.io_error(e))?;
        let answer = read_line(self, io).await?;
        match answer.as_str() {
            "ok" => Ok(()),
            other => match other.strip_prefix("err ") {
                Some(message) => Err(ReferenceError::ChildRefused {
                    index: self.index,
                    pid: self.pid,
                    command: command.to_string(),
                    message: message.to_owned(),
                }),
                None => Err(self.protocol_error(format!("unexpected answer `{other}`"))),
            },
        }
    }

    /// Closes the child's stdin (its signal to exit), waits up to 2 s, then kills it.
    pub(crate) async fn shutdown(&self) {
        // Waiting for the io lock lets an in-flight command finish first.
        self.io.lock().await.take();
        let mut process = self.process.lock().await;
        match tokio::time::timeout(CHILD_GRACE, process.wait()).await {
            Ok(Ok(status)) => {
                tracing::debug!(pid = self.pid, title = %self.title, %status, "child exited");
            }
            Ok(Err(e)) => tracing::warn!(pid = self.pid, error = %e, "failed to wait for child"),
            Err(_) => {
                tracing::warn!(pid = self.pid, title = %self.title, "child ignored EOF; killing it");
                if let Err(e) = process.kill().await {
                    tracing::warn!(pid = self.pid, error = %e, "failed to kill child");
                }
            }
        }
    }
}

async fn read_line(link: &ChildLink, io: &mut ChildIo) -> Result<String, ReferenceError> {
    let mut answer = String::new();
    let n = io
        .stdout
        .read_line(&mut answer)
        .await
        .map_err(|e| link.io_error(e))?;
    if n == 0 {
        return Err(link.protocol_error("it exited (its stdout closed)".to_owned()));
    }
    Ok(answer.trim_end().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_follow_sglang() {
        // As a real SGLang 0.5.23 at TP 1: no rank suffix.
        assert_eq!(child_title(0, 1), "sglang::scheduler");
        assert_eq!(child_title(0, 2), "sglang::scheduler");
        assert_eq!(child_title(1, 2), "sglang::detokenizer");
        assert_eq!(child_title(0, 3), "sglang::scheduler_TP0");
        assert_eq!(child_title(1, 3), "sglang::scheduler_TP1");
        assert_eq!(child_title(2, 3), "sglang::detokenizer");
    }

    #[test]
    fn commands_round_trip() {
        for command in [
            ChildCommand::Leak(1_048_576),
            ChildCommand::GpuLeak(7),
            ChildCommand::GpuAlloc(0),
            ChildCommand::Flush,
            ChildCommand::Ping,
        ] {
            assert_eq!(command.to_string().parse::<ChildCommand>(), Ok(command));
        }
    }

    #[test]
    fn bad_commands_say_why() {
        let err = |s: &str| s.parse::<ChildCommand>().expect_err(s);
        assert!(err("leak").contains("byte count"));
        assert!(err("leak -1").contains("not a byte count"));
        assert!(err("dance").contains("unknown command"));
        assert!(err("flush now").contains("unexpected"));
    }
}
