//! Tests of the parent module.

use std::collections::HashSet;

use super::*;

/// 64×48: big enough for the corner code, small enough for debug builds (the image codecs
/// are ~50× slower unoptimised).
fn generated(format: ImageFormat, mode: ImageMode, per_request: u32) -> ImageSet {
    let source = ImageSource::Generated {
        width: 64,
        height: 48,
        format,
    };
    ImageSet::new(&ImageConfig {
        source,
        mode,
        per_request,
        ..ImageConfig::default()
    })
    .unwrap()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images")
}

fn decode(img: &EncodedImage) -> RgbImage {
    image::load_from_memory(&img.bytes)
        .expect("decodable")
        .into_rgb8()
}

#[test]
fn generated_images_decode_with_the_asked_size_and_format() {
    for (format, mime) in [
        (ImageFormat::Png, "image/png"),
        (ImageFormat::Jpeg, "image/jpeg"),
    ] {
        let source = ImageSource::Generated {
            width: 320,
            height: 200,
            format,
        };
        let set = ImageSet::new(&ImageConfig {
            source,
            ..ImageConfig::default()
        })
        .unwrap();
        let images = set.for_request(3).unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].mime, mime);
        assert_eq!(decode(&images[0]).dimensions(), (320, 200));
        let guessed = image::guess_format(&images[0].bytes).unwrap();
        let expected = match format {
            ImageFormat::Png => image::ImageFormat::Png,
            ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        };
        assert_eq!(guessed, expected);
    }
}

#[test]
fn default_png_is_sized_like_a_real_picture() {
    let set = ImageSet::new(&ImageConfig::default()).unwrap();
    let img = &set.for_request(0).unwrap()[0];
    // Noise keeps PNG from collapsing it; fast deflate keeps it under raw size.
    assert!(
        (50_000..700_000).contains(&img.bytes.len()),
        "{} bytes",
        img.bytes.len()
    );
    let pixels = decode(img);
    let colors: HashSet<[u8; 3]> = pixels.pixels().map(|p| p.0).collect();
    assert!(
        colors.len() > 200,
        "only {} colours: no structure",
        colors.len()
    );
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let config = |seed| ImageConfig {
        seed,
        per_request: 2,
        ..ImageConfig::default()
    };
    let a = ImageSet::new(&config(0)).unwrap();
    let b = ImageSet::new(&config(0)).unwrap();
    assert_eq!(a.for_request(17).unwrap(), b.for_request(17).unwrap());
    let c = ImageSet::new(&config(1)).unwrap();
    assert_ne!(a.for_request(17).unwrap(), c.for_request(17).unwrap());
}

#[test]
fn unique_mode_never_repeats_within_or_across_requests() {
    for format in [ImageFormat::Png, ImageFormat::Jpeg] {
        let set = generated(format, ImageMode::Unique, 3);
        let mut bytes = HashSet::new();
        let mut pixels = HashSet::new();
        for request in (0..20).chain([u64::MAX - 1, u64::MAX]) {
            for img in set.for_request(request).unwrap() {
                pixels.insert(decode(&img).into_raw());
                bytes.insert(img.bytes);
            }
        }
        assert_eq!(bytes.len(), 22 * 3, "{format:?}: repeated bytes");
        assert_eq!(pixels.len(), 22 * 3, "{format:?}: repeated pixels");
    }
}

#[test]
fn repeated_mode_sends_the_same_images_every_request() {
    let set = generated(ImageFormat::Jpeg, ImageMode::Repeated, 2);
    let first = set.for_request(0).unwrap();
    assert_eq!(first, set.for_request(1).unwrap());
    assert_eq!(first, set.for_request(999).unwrap());
    assert_ne!(first[0], first[1], "images within one request still differ");
}

#[test]
fn files_mode_reads_the_fixtures_and_cycles() {
    let dir = fixtures();
    let config = |mode| ImageConfig {
        source: ImageSource::Files(vec![dir.clone()]),
        mode,
        per_request: 1,
        seed: 0,
    };
    let repeated = ImageSet::new(&config(ImageMode::Repeated)).unwrap();
    let originals: Vec<Vec<u8>> = ["a_224x224.png", "b_336x336.jpg", "c_512x384.png"]
        .iter()
        .map(|name| std::fs::read(dir.join(name)).unwrap())
        .collect();
    // Repeated: the first file, unchanged, every time.
    assert_eq!(repeated.for_request(0).unwrap()[0].bytes, originals[0]);
    assert_eq!(repeated.for_request(5).unwrap()[0].bytes, originals[0]);

    let unique = ImageSet::new(&config(ImageMode::Unique)).unwrap();
    let mut seen = HashSet::new();
    for request in 0..9u64 {
        let img = unique.for_request(request).unwrap().remove(0);
        let original = &originals[(request % 3) as usize];
        let want = image::load_from_memory(original).unwrap().into_rgb8();
        let got = decode(&img);
        assert_eq!(got.dimensions(), want.dimensions(), "request {request}");
        assert_eq!(
            image::guess_format(&img.bytes).unwrap(),
            image::guess_format(original).unwrap()
        );
        assert_ne!(&img.bytes, original);
        // Only a corner changes: most pixels are the file's.
        let same = got
            .pixels()
            .zip(want.pixels())
            .filter(|(a, b)| a.0 == b.0)
            .count();
        let total = (got.width() * got.height()) as usize;
        if img.mime == "image/png" {
            assert!(
                same * 100 > total * 95,
                "request {request}: {same}/{total} unchanged"
            );
        }
        assert!(
            seen.insert(img.bytes),
            "request {request} repeats an earlier image"
        );
    }
}

#[test]
fn bad_inputs_give_errors_that_say_what_is_wrong() {
    let generated = |width, height| ImageConfig {
        source: ImageSource::Generated {
            width,
            height,
            format: ImageFormat::Png,
        },
        ..ImageConfig::default()
    };
    let files = |paths: Vec<PathBuf>| ImageConfig {
        source: ImageSource::Files(paths),
        ..ImageConfig::default()
    };
    let err = |config: ImageConfig| ImageSet::new(&config).unwrap_err();

    assert!(matches!(
        err(generated(0, 448)),
        ImageError::InvalidSize { width: 0, .. }
    ));
    assert!(matches!(
        err(generated(448, 100_000)),
        ImageError::InvalidSize { .. }
    ));
    let zero = ImageConfig {
        per_request: 0,
        ..ImageConfig::default()
    };
    assert!(matches!(err(zero), ImageError::ZeroPerRequest));
    assert!(matches!(err(files(vec![])), ImageError::NoFiles));

    let tmp = tempfile::tempdir().unwrap();
    let e = err(files(vec![tmp.path().to_owned()]));
    assert!(
        matches!(&e, ImageError::EmptyDir { path } if path == tmp.path()),
        "{e}"
    );
    let missing = tmp.path().join("missing.png");
    let e = err(files(vec![missing.clone()]));
    assert!(
        matches!(&e, ImageError::Read { path, .. } if *path == missing),
        "{e}"
    );
    assert!(e.to_string().contains("missing.png"));
    let gif = tmp.path().join("x.gif");
    std::fs::write(&gif, b"GIF89a").unwrap();
    assert!(matches!(
        err(files(vec![gif])),
        ImageError::UnsupportedExtension { .. }
    ));
    let corrupt = tmp.path().join("corrupt.jpg");
    std::fs::write(&corrupt, b"not a jpeg").unwrap();
    let e = err(files(vec![corrupt]));
    assert!(
        matches!(
            e,
            ImageError::Decode {
                format: ImageFormat::Jpeg,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn data_url_carries_mime_and_base64() {
    let img = EncodedImage {
        mime: "image/png",
        bytes: vec![0, 1, 2, 250],
    };
    assert_eq!(img.base64(), "AAEC+g==");
    assert_eq!(img.data_url(), "data:image/png;base64,AAEC+g==");
}

#[test]
fn config_round_trips_through_json() {
    let config = ImageConfig {
        source: ImageSource::Files(vec!["fixtures/images".into()]),
        mode: ImageMode::Repeated,
        per_request: 2,
        seed: 7,
    };
    let json = serde_json::to_string(&config).unwrap();
    assert!(json.contains(r#""mode":"repeated""#), "{json}");
    assert_eq!(serde_json::from_str::<ImageConfig>(&json).unwrap(), config);
    let json = serde_json::to_string(&ImageConfig::default()).unwrap();
    assert!(
        json.contains(r#"{"generated":{"width":448,"height":448,"format":"png"}}"#),
        "{json}"
    );
}

/// Prints the cost of one 448×448 image; run with `--ignored --nocapture` (and in release
/// for the number that matters).
#[test]
#[ignore = "timing, not a check"]
fn generation_cost() {
    for format in [ImageFormat::Png, ImageFormat::Jpeg] {
        let source = ImageSource::Generated {
            width: 448,
            height: 448,
            format,
        };
        let set = ImageSet::new(&ImageConfig {
            source,
            ..ImageConfig::default()
        })
        .unwrap();
        let n = 20u32;
        let start = std::time::Instant::now();
        let mut size = 0;
        for i in 0..n {
            size += set.for_request(u64::from(i)).unwrap()[0].bytes.len();
        }
        let total = start.elapsed() / n;
        let start = std::time::Instant::now();
        for i in 0..n {
            std::hint::black_box(generate(448, 448, key(0, i.into(), 0), i.into(), 0));
        }
        let drawing = start.elapsed() / n;
        println!(
            "{format:?}: {total:?} per image ({drawing:?} drawing), {} bytes",
            size / n as usize
        );
    }
}

/// Regenerates `fixtures/images/`; run with `--ignored` after changing the generator.
/// Fixtures are encoded at the best PNG level (smaller files in the repository).
#[test]
#[ignore = "writes into the source tree"]
fn write_fixtures() {
    let dir = fixtures();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, width, height, format, seed) in [
        ("a_224x224.png", 224, 224, ImageFormat::Png, 1),
        ("b_336x336.jpg", 336, 336, ImageFormat::Jpeg, 2),
        ("c_512x384.png", 512, 384, ImageFormat::Png, 3),
    ] {
        let pixels = generate(width, height, key(seed, 0, 0), 0, 0);
        let mut bytes = Vec::new();
        match format {
            ImageFormat::Png => {
                let best = CompressionType::Best;
                PngEncoder::new_with_quality(&mut bytes, best, FilterType::Adaptive)
                    .write_image(pixels.as_raw(), width, height, ExtendedColorType::Rgb8)
                    .unwrap();
            }
            ImageFormat::Jpeg => bytes = encode(&pixels, format).unwrap().bytes,
        }
        assert!(bytes.len() < 200_000, "{name}: {} bytes", bytes.len());
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
