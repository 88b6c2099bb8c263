//! STUB — being replaced by the reference-server helper. Signatures are the contract.
#![allow(missing_docs, unused)]

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("stub")]
    Stub,
}

#[derive(Debug, Clone, Default, clap::Args, serde::Serialize, serde::Deserialize)]
pub struct ReferenceArgs {
    #[arg(long, default_value_t = 30000)]
    pub port: u16,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ChildArgs {
    #[arg(long)]
    pub role: String,
}

pub async fn serve(_args: ReferenceArgs) -> Result<(), ReferenceError> { Err(ReferenceError::Stub) }
pub fn run_child(_args: ChildArgs) -> Result<(), ReferenceError> { Err(ReferenceError::Stub) }
