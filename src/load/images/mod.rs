//! Deterministic images for VLM workloads: generated or read from files, unique per request
//! by default.
//!
//! Engines cache preprocessed images (SGLang's radix and multimodal caches, vLLM's processor
//! cache), so sending the same image again and again hides a leak in the image path. In
//! [`ImageMode::Unique`] every `(request, k)` pair gets different pixels, derived from the seed
//! and the indices alone: a rerun with the same seed sends exactly the same bytes.
//!
//! Uniqueness does not rest on luck: each image carries its request index and position as a
//! small black-and-white code in its lower right corner, on top of seeded gradients, shapes
//! and noise (the noise keeps PNG from compressing the image into a few hundred bytes, which
//! no real image is).

mod draw;
mod files;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder as _, RgbImage};
use serde::{Deserialize, Serialize};

use draw::{draw_code, generate, key};
use files::{SourceFile, expand, read_file};

/// Smallest side of a generated image: the corner code (12 × 8 cells) needs that much room.
pub const MIN_SIDE: u32 = 16;
/// Largest side of a generated image; VLMs resize far below this anyway.
pub const MAX_SIDE: u32 = 8192;
/// JPEG quality of generated and re-encoded images: near-lossless, like a camera's output.
const JPEG_QUALITY: u8 = 90;

/// How an image is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    /// PNG (lossless).
    Png,
    /// JPEG, quality 90.
    Jpeg,
}

impl ImageFormat {
    /// The MIME type, as used in `data:` URLs.
    #[must_use]
    pub fn mime(self) -> &'static str {
        match self {
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
        }
    }

    /// The format a file name's extension stands for (`.png`, `.jpg`, `.jpeg`; any case).
    fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "png" => Some(Self::Png),
            "jpg" | "jpeg" => Some(Self::Jpeg),
            _ => None,
        }
    }
}

/// Where the images come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    /// Images drawn by this crate: gradients, shapes and noise.
    Generated {
        /// Width in pixels (16 to 8192).
        width: u32,
        /// Height in pixels (16 to 8192).
        height: u32,
        /// Encoding sent to the server.
        format: ImageFormat,
    },
    /// PNG or JPEG files, used in turn. A directory stands for the `.png`, `.jpg` and `.jpeg`
    /// files directly inside it, in name order.
    Files(Vec<PathBuf>),
}

/// Whether requests see new images or the same ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageMode {
    /// Different pixels for every image of every request (the default: defeats engine caches).
    Unique,
    /// The same image(s) in every request: exercises the cached path.
    Repeated,
}

/// The images of a VLM workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// Generated or from files.
    pub source: ImageSource,
    /// Unique per request, or repeated.
    pub mode: ImageMode,
    /// Images in each request (at least 1).
    pub per_request: u32,
    /// Seed of every generated pixel: the same seed gives the same bytes.
    pub seed: u64,
}

impl Default for ImageConfig {
    /// 448×448 PNG (a common VLM input size), unique per request, one per request.
    fn default() -> Self {
        Self {
            source: ImageSource::Generated {
                width: 448,
                height: 448,
                format: ImageFormat::Png,
            },
            mode: ImageMode::Unique,
            per_request: 1,
            seed: 0x1AA6_E5EE_D000_0001,
        }
    }
}

/// Why images could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A generated image's width or height is out of range.
    #[error(
        "invalid image size {width}x{height}: width and height must be between {MIN_SIDE} and \
         {MAX_SIDE} pixels"
    )]
    InvalidSize {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
    },
    /// `per_request` is 0.
    #[error("invalid images per request 0: an image workload needs at least 1 image per request")]
    ZeroPerRequest,
    /// A request asked for images in a workload that has none.
    #[error(
        "this workload has no images: give it an image configuration (a vlm-image scenario, or Workload::custom_with_images)"
    )]
    NoImages,
    /// `ImageSource::Files` with an empty list.
    #[error("no image files given: list at least one .png or .jpg file or a directory of them")]
    NoFiles,
    /// A directory without any usable image.
    #[error("image directory {path} holds no .png, .jpg or .jpeg files: add some or pick another")]
    EmptyDir {
        /// The directory.
        path: PathBuf,
    },
    /// A file or directory could not be read.
    #[error("failed to read image file {path}: check that it exists and is readable")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file's extension is not one we can send.
    #[error("unsupported image file {path}: only .png, .jpg and .jpeg files can be used")]
    UnsupportedExtension {
        /// The file.
        path: PathBuf,
    },
    /// A file did not decode as the format its extension claims.
    #[error("failed to decode image file {path}: it is not a valid {format:?} file")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The format its extension claims.
        format: ImageFormat,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
    /// Encoding an image failed (not expected for in-memory buffers).
    #[error("failed to encode a {format:?} image")]
    Encode {
        /// The target format.
        format: ImageFormat,
        /// The encoder's error.
        #[source]
        source: image::ImageError,
    },
}

/// One encoded image, ready to put into a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedImage {
    /// `image/png` or `image/jpeg`.
    pub mime: &'static str,
    /// The encoded file bytes.
    pub bytes: Vec<u8>,
}

impl EncodedImage {
    /// A `data:` URL (`data:image/png;base64,...`), as the OpenAI route and SGLang's
    /// `image_data` accept.
    #[must_use]
    pub fn data_url(&self) -> String {
        format!("data:{};base64,{}", self.mime, self.base64())
    }

    /// The bytes in standard base64 with padding.
    #[must_use]
    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.bytes)
    }
}

/// The images of a workload, validated once; hands out each request's images.
#[derive(Debug)]
pub struct ImageSet {
    mode: ImageMode,
    per_request: u32,
    seed: u64,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Generated {
        width: u32,
        height: u32,
        format: ImageFormat,
    },
    Files(Vec<SourceFile>),
}

impl ImageSet {
    /// Validate `config`; files are read and decoded now, so a bad path fails before the
    /// server starts rather than at request 1.
    ///
    /// # Errors
    ///
    /// [`ImageError`] for an out-of-range size, zero images per request, an empty file list or
    /// directory, an unreadable, undecodable or non-PNG/JPEG file.
    pub fn new(config: &ImageConfig) -> Result<Self, ImageError> {
        if config.per_request == 0 {
            return Err(ImageError::ZeroPerRequest);
        }
        let kind = match &config.source {
            &ImageSource::Generated {
                width,
                height,
                format,
            } => {
                let ok = |side| (MIN_SIDE..=MAX_SIDE).contains(&side);
                if !ok(width) || !ok(height) {
                    return Err(ImageError::InvalidSize { width, height });
                }
                Kind::Generated {
                    width,
                    height,
                    format,
                }
            }
            ImageSource::Files(paths) => {
                let mut files = Vec::new();
                for path in expand(paths)? {
                    files.push(read_file(&path)?);
                }
                Kind::Files(files)
            }
        };
        Ok(Self {
            mode: config.mode,
            per_request: config.per_request,
            seed: config.seed,
            kind,
        })
    }

    /// The `per_request` images of request `request_index` (0-based, counted over the whole
    /// run so that warm-up and measured requests never share an image).
    ///
    /// Unique mode: different bytes for every `(request_index, k)`, the same for the same seed.
    /// Repeated mode: the same images for every request. Files are used in turn.
    ///
    /// # Errors
    ///
    /// [`ImageError::Encode`] if encoding fails, which in-memory buffers do not do in practice.
    pub fn for_request(&self, request_index: u64) -> Result<Vec<EncodedImage>, ImageError> {
        // Repeated mode is request 0 every time: same pixels, same bytes.
        let request = match self.mode {
            ImageMode::Unique => request_index,
            ImageMode::Repeated => 0,
        };
        (0..self.per_request)
            .map(|k| self.image(request, k))
            .collect()
    }

    /// `n` images of request `request_index`, as [`for_request`](Self::for_request) makes them
    /// (a request with more images than the scenario's `per_request`).
    ///
    /// # Errors
    ///
    /// [`ImageError::Encode`] if encoding fails.
    pub fn for_request_n(
        &self,
        request_index: u64,
        n: u32,
    ) -> Result<Vec<EncodedImage>, ImageError> {
        let request = match self.mode {
            ImageMode::Unique => request_index,
            ImageMode::Repeated => 0,
        };
        (0..n).map(|k| self.image(request, k)).collect()
    }

    /// One image of request `request_index` drawn at `width` × `height` (generated images; with
    /// files, the file as it is).
    ///
    /// # Errors
    ///
    /// [`ImageError::InvalidSize`] out of range, [`ImageError::Encode`] if encoding fails.
    pub fn image_sized(
        &self,
        request_index: u64,
        width: u32,
        height: u32,
    ) -> Result<EncodedImage, ImageError> {
        let request = match self.mode {
            ImageMode::Unique => request_index,
            ImageMode::Repeated => 0,
        };
        match &self.kind {
            &Kind::Generated { format, .. } => {
                let ok = |side| (MIN_SIDE..=MAX_SIDE).contains(&side);
                if !ok(width) || !ok(height) {
                    return Err(ImageError::InvalidSize { width, height });
                }
                let pixels = generate(width, height, key(self.seed, request, 0), request, 0);
                encode(&pixels, format)
            }
            Kind::Files(_) => self.image(request, 0),
        }
    }

    fn image(&self, request: u64, k: u32) -> Result<EncodedImage, ImageError> {
        match &self.kind {
            &Kind::Generated {
                width,
                height,
                format,
            } => {
                let pixels = generate(width, height, key(self.seed, request, k), request, k);
                encode(&pixels, format)
            }
            Kind::Files(files) => {
                let slot = request.wrapping_mul(u64::from(self.per_request)) + u64::from(k);
                // `files` is never empty (checked in `new`); `max(1)` keeps `%` total anyway.
                let idx = (slot % files.len().max(1) as u64) as usize;
                let Some(file) = files.get(idx) else {
                    return Err(ImageError::NoFiles);
                };
                match self.mode {
                    ImageMode::Repeated => Ok(EncodedImage {
                        mime: file.format.mime(),
                        bytes: file.bytes.clone(),
                    }),
                    ImageMode::Unique => {
                        let mut pixels = file.pixels.clone();
                        draw_code(&mut pixels, request, k);
                        encode(&pixels, file.format)
                    }
                }
            }
        }
    }
}

fn encode(pixels: &RgbImage, format: ImageFormat) -> Result<EncodedImage, ImageError> {
    let mut bytes = Vec::with_capacity(pixels.as_raw().len() / 2);
    let (w, h) = pixels.dimensions();
    let (raw, color) = (pixels.as_raw(), ExtendedColorType::Rgb8);
    let result = match format {
        // Fast deflate with the Sub filter: 3 ms for 448×448 in release where the default
        // level takes 90 ms, for files about twice as large (~1.2 bytes per pixel, like a photo
        // saved as PNG). Encoding, not drawing, is the cost of an image.
        ImageFormat::Png => {
            let sink = Cursor::new(&mut bytes);
            PngEncoder::new_with_quality(sink, CompressionType::Fast, FilterType::Sub)
                .write_image(raw, w, h, color)
        }
        ImageFormat::Jpeg => JpegEncoder::new_with_quality(Cursor::new(&mut bytes), JPEG_QUALITY)
            .write_image(raw, w, h, color),
    };
    result.map_err(|source| ImageError::Encode { format, source })?;
    Ok(EncodedImage {
        mime: format.mime(),
        bytes,
    })
}

#[cfg(test)]
mod tests;
