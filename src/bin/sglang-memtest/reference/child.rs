//! The child process's side (`sglang-memtest reference-child`): set the title, die with the
//! parent, then serve the line protocol of [`super::children`] until stdin closes.

use std::ffi::CString;
use std::io::{BufRead, Write};

use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::unistd::getppid;

use super::children::ChildCommand;
use super::gpu::GpuMemory;
use super::memory::{Leaks, pin_mmap_threshold, trim};
use super::{ChildArgs, ReferenceError};

/// What a child holds on the parent's behalf.
struct Held {
    leaks: Leaks,
    gpu: Option<GpuMemory>,
}

impl Held {
    fn gpu(&mut self) -> Result<&mut GpuMemory, ReferenceError> {
        // Created on first use unless --init-gpu asked for it at startup.
        if self.gpu.is_none() {
            self.gpu = Some(GpuMemory::new()?);
        }
        self.gpu.as_mut().ok_or(ReferenceError::NoGpuSupport)
    }

    fn run(&mut self, command: ChildCommand) -> Result<(), ReferenceError> {
        match command {
            ChildCommand::Leak(n) => self.leaks.leak(n),
            ChildCommand::GpuLeak(n) => self.gpu()?.leak(n),
            ChildCommand::GpuAlloc(n) => self.gpu()?.alloc_and_free(n),
            ChildCommand::Flush => {
                trim();
                Ok(())
            }
            ChildCommand::Ping => Ok(()),
        }
    }
}

/// Sets `comm` to the title, truncated to the kernel's 15 bytes (cut on a char boundary).
fn set_comm(title: &str) -> Result<(), ReferenceError> {
    let mut end = title.len().min(15);
    while !title.is_char_boundary(end) {
        end -= 1;
    }
    let name = CString::new(&title[..end]).map_err(|_| ReferenceError::BadTitle {
        title: title.to_owned(),
    })?;
    prctl::set_name(&name).map_err(|source| ReferenceError::Prctl {
        what: "set the process name",
        source,
    })
}

/// The child's main: see [`super::run_child`].
pub(crate) fn run(args: ChildArgs) -> Result<(), ReferenceError> {
    set_comm(&args.title)?;
    prctl::set_pdeathsig(Signal::SIGTERM).map_err(|source| ReferenceError::Prctl {
        what: "set the parent-death signal",
        source,
    })?;
    // The parent may have died between fork and prctl, in which case no signal will ever come.
    if getppid().as_raw() != args.parent_pid {
        return Err(ReferenceError::ParentGone);
    }
    pin_mmap_threshold();
    let mut held = Held {
        leaks: Leaks::default(),
        gpu: None,
    };
    if args.init_gpu {
        held.gpu = Some(GpuMemory::new()?);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let io_err = |source| ReferenceError::ParentPipe { source };
    writeln!(out, "ready").map_err(io_err)?;
    out.flush().map_err(io_err)?;
    tracing::debug!(index = args.index, title = %args.title, "reference child ready");
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.map_err(io_err)?;
        let answer = match line.parse::<ChildCommand>() {
            Ok(command) => match held.run(command) {
                Ok(()) => "ok".to_owned(),
                Err(e) => format!("err {}", one_line(&e)),
            },
            Err(message) => format!("err {message}"),
        };
        writeln!(out, "{answer}").map_err(io_err)?;
        out.flush().map_err(io_err)?;
    }
    // stdin closed: the parent is shutting down (or gone).
    tracing::debug!(
        index = args.index,
        leaked = held.leaks.bytes(),
        "reference child exiting"
    );
    Ok(())
}

/// The error and its sources on one line (the protocol is line based).
fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.replace('\n', " ")
}
