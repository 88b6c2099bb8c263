//! Reports (stub).
#![allow(missing_docs, unused)]
#[derive(Debug, thiserror::Error)]
pub enum ReportError { #[error("stub")] Stub }
#[derive(Debug, Clone)] pub struct Report {}
