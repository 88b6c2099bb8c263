//! Scenarios (stub).
#![allow(missing_docs, unused)]
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError { #[error("stub")] Stub }
#[derive(Debug, Clone)] pub struct Scenario {}
#[derive(Debug, Clone)] pub enum Target { Reference }
