//! The pixels of a generated image: seeded gradients, shapes and noise, and the corner code
//! that makes every `(request, k)` differ.

use image::RgbImage;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

/// Bits in the corner code: 64 for the request index, 32 for the image's position in it.
const CODE_COLS: u32 = 12;
const CODE_ROWS: u32 = 8;

/// One 64-bit seed per `(seed, request, k)`, well mixed (splitmix64 finaliser) so that
/// neighbouring indices give unrelated pictures.
pub(super) fn key(seed: u64, request: u64, k: u32) -> u64 {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    mix(mix(mix(seed) ^ request) ^ u64::from(k))
}

/// Draw one picture: a two-colour gradient, a few filled shapes, low-amplitude noise and the
/// corner code. Everything works on whole rows or lookup tables (no division or bounds check
/// per pixel): drawing 448×448 costs well under a millisecond in release, less than encoding.
pub(super) fn generate(width: u32, height: u32, key: u64, request: u64, k: u32) -> RgbImage {
    let mut rng = ChaCha8Rng::seed_from_u64(key);
    let color = |rng: &mut ChaCha8Rng| [rng.random::<u8>(), rng.random(), rng.random()];
    let (from, to) = (color(&mut rng), color(&mut rng));
    // Gradient along a random direction: position t = (ax*x + ay*y) * 256 / norm in 0..=256,
    // split into per-column and per-row parts, colours from a 257-entry table.
    let (ax, ay) = (rng.random_range(0..=8u32), rng.random_range(0..=8u32));
    let norm = (ax * (width - 1) + ay * (height - 1)).max(1);
    let blend = |t: u32| -> [u8; 3] {
        std::array::from_fn(|c| {
            let (a, b) = (u32::from(from[c]), u32::from(to[c]));
            ((a * (256 - t) + b * t) / 256) as u8
        })
    };
    let table: Vec<[u8; 3]> = (0..=256).map(blend).collect();
    let along_x: Vec<usize> = (0..width).map(|x| (ax * x * 256 / norm) as usize).collect();

    let (w, h) = (width as usize, height as usize);
    let mut img = RgbImage::new(width, height);
    let buf: &mut [u8] = &mut img;
    for (y, row) in buf.chunks_exact_mut(w * 3).enumerate() {
        let along_y = (ay * y as u32 * 256 / norm) as usize;
        for (px, tx) in row.chunks_exact_mut(3).zip(&along_x) {
            px.copy_from_slice(&table[(tx + along_y).min(256)]);
        }
    }

    // Shapes, filled span by span: cost is proportional to their area.
    for _ in 0..rng.random_range(3..=6) {
        let fill = color(&mut rng);
        let side = width.min(height) as usize;
        let (cx, cy) = (rng.random_range(0..w), rng.random_range(0..h));
        let r = rng.random_range(side / 16..=side / 4).max(1);
        let circle = rng.random_bool(0.5);
        for y in cy.saturating_sub(r)..(cy + r).min(h) {
            let dy = y.abs_diff(cy);
            let half = if circle { (r * r - dy * dy).isqrt() } else { r };
            let (x0, x1) = (cx.saturating_sub(half), (cx + half).min(w));
            let row = &mut buf[(y * w + x0) * 3..(y * w + x1) * 3];
            for px in row.chunks_exact_mut(3) {
                px.copy_from_slice(&fill);
            }
        }
    }

    // Noise of -1..=+2 per pixel (the same on the three channels, like sensor noise), from a
    // cheap xorshift: ChaCha per pixel would dominate the cost. Two bits of noise per pixel
    // keep PNG from shrinking the picture to a drawing's few KiB, as no photo would.
    let mut state = key | 1;
    for (i, px) in buf.chunks_exact_mut(3).enumerate() {
        let lane = i % 32;
        if lane == 0 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
        }
        let noise = ((state >> (lane * 2)) & 3) as u8;
        for c in px {
            *c = c.saturating_add(noise).saturating_sub(1);
        }
    }
    draw_code(&mut img, request, k);
    img
}

/// Write `request` (64 bits) and `k` (32 bits) as black and white cells in the lower right
/// corner, so two images of different `(request, k)` always differ in pixels. Cells shrink with
/// the image (down to 1 px) and are clipped when the image is smaller than the code.
pub(super) fn draw_code(img: &mut RgbImage, request: u64, k: u32) {
    let (w, h) = img.dimensions();
    let cell = (w.min(h) / 56).max(1);
    let (x0, y0) = (
        w.saturating_sub(CODE_COLS * cell),
        h.saturating_sub(CODE_ROWS * cell),
    );
    for i in 0..CODE_COLS * CODE_ROWS {
        let bit = if i < 64 {
            (request >> i) & 1
        } else {
            u64::from(k >> (i - 64)) & 1
        };
        let value = if bit == 1 { 255 } else { 0 };
        let (cx, cy) = (x0 + (i % CODE_COLS) * cell, y0 + (i / CODE_COLS) * cell);
        for y in cy..(cy + cell).min(h) {
            for x in cx..(cx + cell).min(w) {
                img.put_pixel(x, y, image::Rgb([value; 3]));
            }
        }
    }
}
