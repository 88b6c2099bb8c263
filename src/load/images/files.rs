//! Image files given by the user: directories expanded, every file read and decoded up front.

use std::path::{Path, PathBuf};

use image::RgbImage;

use super::{ImageError, ImageFormat};

/// One image file, read and decoded up front.
#[derive(Debug)]
pub(super) struct SourceFile {
    pub(super) format: ImageFormat,
    /// The file as it is: sent unchanged in repeated mode.
    pub(super) bytes: Vec<u8>,
    /// Decoded pixels: marked and re-encoded in unique mode.
    pub(super) pixels: RgbImage,
}

/// Files as given, directories replaced by their image files in name order.
pub(super) fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ImageError> {
    if paths.is_empty() {
        return Err(ImageError::NoFiles);
    }
    let mut out = Vec::new();
    for path in paths {
        if !path.is_dir() {
            out.push(path.clone());
            continue;
        }
        let read_err = |source| ImageError::Read {
            path: path.clone(),
            source,
        };
        let mut found = Vec::new();
        for entry in std::fs::read_dir(path).map_err(read_err)? {
            let p = entry.map_err(read_err)?.path();
            if p.is_file() && ImageFormat::from_path(&p).is_some() {
                found.push(p);
            }
        }
        if found.is_empty() {
            return Err(ImageError::EmptyDir { path: path.clone() });
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

pub(super) fn read_file(path: &Path) -> Result<SourceFile, ImageError> {
    let format = ImageFormat::from_path(path).ok_or_else(|| ImageError::UnsupportedExtension {
        path: path.to_owned(),
    })?;
    let bytes = std::fs::read(path).map_err(|source| ImageError::Read {
        path: path.to_owned(),
        source,
    })?;
    let codec = match format {
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
    };
    let pixels = image::load_from_memory_with_format(&bytes, codec)
        .map_err(|source| ImageError::Decode {
            path: path.to_owned(),
            format,
            source,
        })?
        .into_rgb8();
    Ok(SourceFile {
        format,
        bytes,
        pixels,
    })
}
