//! PNG and SVG plots of a run, against the measured requests (every figure of the verdict is
//! per request).
//!
//! On top, one **focus panel** per leaking or undecided metric (else per plateau, else the tree's
//! total): its growth since the first measured request on its own scale with absolute values on
//! the right, the fitted trend over the judged window and its interval, the peak dashed, and a
//! summary box. Below, one **overview panel** per kind of memory (host RSS, GPU, `/dev/shm`):
//! every process's growth on one axis, so a 1 MiB/request leak in a small process climbs beside a
//! flat 2 GiB one; panels in which nothing moved collapse into a line of text. Warm-up, idle,
//! cooldown and an adaptive extension are shaded; processes are named by role. Both files are
//! written atomically (temp file + rename), so a reader never sees half a plot.
//!
//! Text is drawn with DejaVu Sans embedded in the binary (`assets/fonts/`): plotters' system
//! font lookup needs fontconfig and installed fonts, which CI images and GPU runners lack.

mod axis;
mod draw;
pub(crate) use draw::{encode_png, register_font};
pub(crate) use figure::{LEAK_RED, PALETTE, Scale, UNSURE_ORANGE};
mod figure;

use std::path::{Path, PathBuf};

use crate::analysis::Verdict;
use crate::report::Report;
use crate::tracker::Timeline;
use figure::Figure;

/// What a plot is made of.
#[derive(Debug, Clone, Copy)]
pub struct PlotInput<'a> {
    /// The run's samples.
    pub timeline: &'a Timeline,
    /// The verdict (headline, focus panels, trends), when the run got that far.
    pub verdict: Option<&'a Verdict>,
    /// The figure's title.
    pub title: &'a str,
    /// Measured requests planned before an adaptive extension: requests past it are shaded.
    pub planned_requests: Option<u64>,
}

impl<'a> PlotInput<'a> {
    /// A plot of a timeline alone (with its verdict, when there is one).
    pub fn new(timeline: &'a Timeline, verdict: Option<&'a Verdict>, title: &'a str) -> Self {
        Self {
            timeline,
            verdict,
            title,
            planned_requests: None,
        }
    }

    /// The plot of a report: its timeline, verdict and adaptive extension, titled `title`.
    pub fn of(report: &'a Report, title: &'a str) -> Self {
        Self {
            timeline: &report.timeline,
            verdict: report.verdict.as_ref(),
            title,
            planned_requests: report.adaptive.as_ref().map(|a| a.planned),
        }
    }
}

/// Why the plots could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The file stem would escape the output directory or is empty.
    #[error("invalid plot file name `{stem}`: use a plain name without `/`")]
    InvalidStem {
        /// The stem that was given.
        stem: String,
    },
    /// The embedded font did not parse (a corrupt `assets/fonts/DejaVuSans.ttf`).
    #[error("failed to load the embedded plot font assets/fonts/DejaVuSans.ttf")]
    Font,
    /// The output directory could not be created.
    #[error("failed to create plot directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Plotters failed while drawing (its errors are backend-specific, kept as text).
    #[error("failed to draw plot {path}: {message}")]
    Draw {
        /// The file being drawn.
        path: PathBuf,
        /// What plotters said.
        message: String,
    },
    /// The bitmap could not be encoded as PNG.
    #[error("failed to encode plot {path} as png")]
    Encode {
        /// The PNG file.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: png::EncodingError,
    },
    /// The file could not be written or moved into place.
    #[error("failed to write plot {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The files written by [`write_plots`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotFiles {
    /// `<dir>/<stem>.png`.
    pub png: PathBuf,
    /// `<dir>/<stem>.svg`.
    pub svg: PathBuf,
}

/// Write `<stem>.png` and `<stem>.svg` into `dir` (created if missing).
///
/// A timeline without memory series still gives a figure, one that says "no data".
///
/// # Errors
///
/// [`PlotError`] when `stem` is not a plain file name, the directory cannot be created, the
/// embedded font is corrupt, or a file cannot be drawn, encoded or written.
pub fn write_plots(input: &PlotInput<'_>, dir: &Path, stem: &str) -> Result<PlotFiles, PlotError> {
    if stem.is_empty() || stem.contains(['/', '\\']) || stem == "." || stem == ".." {
        return Err(PlotError::InvalidStem {
            stem: stem.to_owned(),
        });
    }
    draw::register_font()?;
    std::fs::create_dir_all(dir).map_err(|source| PlotError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let figure = Figure::new(input);
    let files = PlotFiles {
        png: dir.join(format!("{stem}.png")),
        svg: dir.join(format!("{stem}.svg")),
    };
    write_atomic(&files.png, &draw::png(&figure, &files.png)?)?;
    write_atomic(&files.svg, draw::svg(&figure, &files.svg)?.as_bytes())?;
    Ok(files)
}

/// The figure as SVG text, for embedding (the HTML report).
///
/// # Errors
///
/// [`PlotError::Font`] or [`PlotError::Draw`].
pub fn svg(input: &PlotInput<'_>) -> Result<String, PlotError> {
    draw::register_font()?;
    draw::svg(&Figure::new(input), Path::new("(inline svg)"))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PlotError> {
    crate::util::write_atomic(path, bytes).map_err(|source| PlotError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests;
