//! The `sglang-memtest` command line (being written).
use clap::{Parser, Subcommand};
use sglang_memtest::reference;

#[derive(Parser)]
#[command(name = "sglang-memtest", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the reference server (planted leaks on demand).
    ServeReference(reference::ReferenceArgs),
    /// Internal: a child process of the reference server.
    #[command(hide = true)]
    ReferenceChild(reference::ChildArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::ServeReference(args) => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(reference::serve(args))?;
        }
        Cmd::ReferenceChild(args) => reference::run_child(args)?,
    }
    Ok(())
}
