//! PNG and SVG plots of a run: memory over time, one panel per kind of memory.
//!
//! The figure has up to three stacked panels sharing the x axis (seconds since the tracker
//! started): host RSS of the tree and its largest processes, GPU memory (when the tracker saw a
//! GPU), and `/dev/shm` (when sampled). Warm-up and cooldown are shaded; the verdict heads the
//! figure. Both files are written atomically (temp file + rename), so a reader never sees half
//! a plot.
//!
//! Text is drawn with DejaVu Sans embedded in the binary (`assets/fonts/`): plotters' system
//! font lookup needs fontconfig and installed fonts, which CI images and GPU runners lack.

mod draw;
mod figure;

use std::path::{Path, PathBuf};

use crate::analysis::Verdict;
use crate::tracker::Timeline;
use figure::Figure;

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

/// Write `<stem>.png` and `<stem>.svg` into `dir` (created if missing): memory over time,
/// phases shaded, the verdict (when given) in the heading.
///
/// A timeline without memory series still gives a figure, one that says "no data".
///
/// # Errors
///
/// [`PlotError`] when `stem` is not a plain file name, the directory cannot be created, the
/// embedded font is corrupt, or a file cannot be drawn, encoded or written.
pub fn write_plots(
    timeline: &Timeline,
    verdict: Option<&Verdict>,
    title: &str,
    dir: &Path,
    stem: &str,
) -> Result<PlotFiles, PlotError> {
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
    let figure = Figure::new(timeline, verdict, title);
    let files = PlotFiles {
        png: dir.join(format!("{stem}.png")),
        svg: dir.join(format!("{stem}.svg")),
    };
    write_atomic(&files.png, &draw::png(&figure, &files.png)?)?;
    write_atomic(&files.svg, draw::svg(&figure, &files.svg)?.as_bytes())?;
    Ok(files)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PlotError> {
    crate::util::write_atomic(path, bytes).map_err(|source| PlotError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests;
