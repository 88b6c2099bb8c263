//! Campaigns: many scenario runs from one plan, and what their reports say together. They sit
//! above the configuration: each run is a [`ScenarioConfig`](crate::config::ScenarioConfig) built
//! and run like any other, and a campaign reads only the [`Report`](crate::report::Report)s.
//!
//! - [`sweep`]: dose–response, growth per request fitted against a knob.
//! - [`calibrate`]: how often real clean reference servers are called leaks and real planted
//!   leaks are caught, through the whole pipeline (the synthetic calibration of the statistics
//!   is `analysis::calibrate`).

pub mod calibrate;
pub mod sweep;
mod sweep_plot;
