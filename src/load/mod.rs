//! Load generation (stub).
#![allow(missing_docs, unused)]
#[derive(Debug, thiserror::Error)]
pub enum LoadError { #[error("stub")] Stub }
#[derive(Debug, Clone)] pub enum Api { Native, OpenAi }
#[derive(Debug, Clone)] pub struct DriverConfig {}
#[derive(Debug, Clone)] pub enum Workload { Text }
