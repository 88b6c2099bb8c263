//! Images in requests: reading them (data: URLs, raw base64, local files), decoding them for
//! real (PNG, JPEG), and the LRU cache of decoded pixels that lets repeated images skip work.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Why an image in a request was refused (each becomes HTTP 400).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImageError {
    /// http(s) URLs need a network this server does not have.
    #[error(
        "image {index}: http(s) image URLs are not supported by the reference server (it has no \
         network); send a data: URL, base64 or a local file path"
    )]
    RemoteUrl {
        /// Position in the request.
        index: usize,
    },
    /// Neither a data: URL, base64 nor an existing file.
    #[error("image {index}: not a data: URL, valid base64 or an existing file path ({reason})")]
    Unreadable {
        /// Position in the request.
        index: usize,
        /// What went wrong.
        reason: String,
    },
    /// The bytes are not a PNG or JPEG image the decoder accepts.
    #[error("image {index}: cannot decode it as PNG or JPEG; send a valid image")]
    Corrupt {
        /// Position in the request.
        index: usize,
        /// The decoder's error.
        #[source]
        source: image::ImageError,
    },
}

/// Turns one `image_data` / `image_url.url` string into the encoded image bytes.
pub(crate) fn read_source(index: usize, source: &str) -> Result<Vec<u8>, ImageError> {
    let source = source.trim();
    let lower = source.get(..8).unwrap_or(source).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Err(ImageError::RemoteUrl { index });
    }
    let unreadable = |reason: String| ImageError::Unreadable { index, reason };
    if let Some(rest) = source.strip_prefix("data:") {
        let (_, payload) = rest
            .split_once(";base64,")
            .ok_or_else(|| unreadable("a data: URL needs `;base64,`".to_owned()))?;
        return STANDARD
            .decode(payload)
            .map_err(|e| unreadable(format!("bad base64: {e}")));
    }
    let path = source.strip_prefix("file://").unwrap_or(source);
    // A base64 string may look like a relative path, so only an existing file counts as one.
    if path.starts_with('/') || Path::new(path).is_file() {
        return std::fs::read(path).map_err(|e| unreadable(format!("cannot read `{path}`: {e}")));
    }
    STANDARD
        .decode(source)
        .map_err(|e| unreadable(format!("bad base64: {e}")))
}

/// Decodes PNG or JPEG bytes into an RGB pixel buffer (freshly written memory).
pub(crate) fn decode(index: usize, encoded: &[u8]) -> Result<Vec<u8>, ImageError> {
    image::load_from_memory(encoded)
        .map(|img| img.into_rgb8().into_raw())
        .map_err(|source| ImageError::Corrupt { index, source })
}

/// The cache key of an encoded image: a fixed-key hash (stable across requests) plus length.
pub(crate) fn key(encoded: &[u8]) -> (u64, usize) {
    let mut hasher = DefaultHasher::new();
    encoded.hash(&mut hasher);
    (hasher.finish(), encoded.len())
}

/// An LRU cache of decoded images bounded in bytes.
#[derive(Debug)]
pub(crate) struct MmCache {
    cap: u64,
    bytes: u64,
    entries: HashMap<(u64, usize), Vec<u8>>,
    /// Least recently used first.
    order: VecDeque<(u64, usize)>,
    hits: u64,
    misses: u64,
}

impl MmCache {
    /// An empty cache of `cap` bytes (0 disables it: every lookup misses, nothing is kept).
    pub(crate) fn new(cap: u64) -> Self {
        Self {
            cap,
            bytes: 0,
            entries: HashMap::new(),
            order: VecDeque::new(),
            hits: 0,
            misses: 0,
        }
    }

    /// True (and marks it recently used) when the image is cached.
    pub(crate) fn lookup(&mut self, key: (u64, usize)) -> bool {
        if self.entries.contains_key(&key) {
            self.touch(key);
            self.hits += 1;
            true
        } else {
            self.misses += 1;
            false
        }
    }

    fn touch(&mut self, key: (u64, usize)) {
        if let Some(pos) = self.order.iter().position(|k| *k == key) {
            self.order.remove(pos);
        }
        self.order.push_back(key);
    }

    /// Keeps decoded pixels, evicting least recently used entries to stay within the cap.
    /// Returns how many entries were evicted.
    pub(crate) fn insert(&mut self, key: (u64, usize), pixels: Vec<u8>) -> usize {
        let len = pixels.len() as u64;
        if len > self.cap || self.entries.contains_key(&key) {
            return 0;
        }
        let mut evicted = 0;
        while self.bytes + len > self.cap {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(px) = self.entries.remove(&old) {
                self.bytes -= px.len() as u64;
                evicted += 1;
            }
        }
        self.bytes += len;
        self.entries.insert(key, pixels);
        self.order.push_back(key);
        evicted
    }

    /// Drops every entry (hit/miss counters are kept).
    pub(crate) fn clear(&mut self) {
        self.entries = HashMap::new();
        self.order = VecDeque::new();
        self.bytes = 0;
    }

    /// Bytes of decoded pixels held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Hits over lookups, or 0 before the first lookup (what SGLang's gauge shows then).
    pub(crate) fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }

    /// Lookups that hit.
    pub(crate) fn hits(&self) -> u64 {
        self.hits
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use image::{ImageFormat, RgbImage};
    use std::io::Cursor;

    /// A small encoded image whose pixels depend on `seed` (unique images per seed).
    pub(crate) fn tiny(format: ImageFormat, seed: u8) -> Vec<u8> {
        let img = RgbImage::from_fn(8, 6, |x, y| image::Rgb([seed, x as u8 * 30, y as u8 * 40]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).expect("encode");
        out.into_inner()
    }

    #[test]
    fn png_and_jpeg_decode_to_rgb() {
        for format in [ImageFormat::Png, ImageFormat::Jpeg] {
            let pixels = decode(0, &tiny(format, 1)).expect("decode");
            assert_eq!(pixels.len(), 8 * 6 * 3, "{format:?}");
        }
    }

    #[test]
    fn corrupt_images_are_refused() {
        let mut png = tiny(ImageFormat::Png, 1);
        png.truncate(20);
        assert!(matches!(
            decode(3, &png),
            Err(ImageError::Corrupt { index: 3, .. })
        ));
        assert!(decode(0, b"not an image").is_err());
    }

    #[test]
    fn sources_are_read() {
        let png = tiny(ImageFormat::Png, 2);
        let b64 = STANDARD.encode(&png);
        let url = format!("data:image/png;base64,{b64}");
        assert_eq!(read_source(0, &url).expect("data url"), png);
        assert_eq!(read_source(0, &b64).expect("base64"), png);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.png");
        std::fs::write(&path, &png).expect("write");
        let path = path.to_str().expect("utf-8 path");
        assert_eq!(read_source(0, path).expect("file"), png);
        assert!(matches!(
            read_source(1, "https://example.com/cat.png"),
            Err(ImageError::RemoteUrl { index: 1 })
        ));
        assert!(matches!(
            read_source(0, "/no/such/file.png"),
            Err(ImageError::Unreadable { .. })
        ));
        assert!(read_source(0, "data:image/png,xyz").is_err());
    }

    #[test]
    fn mm_cache_is_lru_and_bounded() {
        let mut cache = MmCache::new(250);
        let (a, b, c) = ((1, 1), (2, 2), (3, 3));
        assert!(!cache.lookup(a));
        assert_eq!(cache.insert(a, vec![1; 100]), 0);
        assert_eq!(cache.insert(b, vec![1; 100]), 0);
        assert!(cache.lookup(a)); // a is now the most recent, b the least
        assert_eq!(cache.insert(c, vec![1; 100]), 1);
        assert!(!cache.lookup(b));
        assert!(cache.lookup(a) && cache.lookup(c));
        assert_eq!(cache.bytes(), 200);
        assert_eq!(cache.insert((4, 4), vec![1; 300]), 0, "larger than the cap");
        assert_eq!(cache.hits(), 3);
        assert!((cache.hit_rate() - 3.0 / 5.0).abs() < 1e-12);
        cache.clear();
        assert_eq!(cache.bytes(), 0);
        assert!(!cache.lookup(a));
    }

    #[test]
    fn disabled_cache_keeps_nothing() {
        let mut cache = MmCache::new(0);
        assert_eq!(cache.insert((1, 1), vec![1; 10]), 0);
        assert!(!cache.lookup((1, 1)));
    }
}
