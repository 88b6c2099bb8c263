//! The knobs' value parsers: each returns what would be accepted when the value is not.

use std::time::Duration;

use crate::load::images;

/// A day in seconds, the longest timeout a knob takes.
pub(super) const SECS_DAY: f64 = 86_400.0;

pub(super) fn seconds(v: &str, min: f64, max: f64) -> Result<Duration, String> {
    let expected = || {
        format!(
            "a number of seconds from {min} to {max} (e.g. 0.1), or a duration such as 500ms or 2m"
        )
    };
    let t = v.trim();
    let d = match t.parse::<f64>() {
        Ok(s) if s.is_finite() => Duration::try_from_secs_f64(s).map_err(|_| expected())?,
        _ => humantime::parse_duration(t).map_err(|_| expected())?,
    };
    let s = d.as_secs_f64();
    if (min..=max).contains(&s) {
        Ok(d)
    } else {
        Err(expected())
    }
}

pub(super) fn fraction(v: &str, min: f64, max: f64) -> Result<f64, String> {
    let expected = || format!("a fraction from {min} to {max}");
    match v.trim().parse::<f64>() {
        Ok(f) if (min..=max).contains(&f) => Ok(f),
        _ => Err(expected()),
    }
}

pub(crate) use crate::util::{nonempty, switch, whole};

/// A byte size: `65536`, `64KiB`, `64K`, `1.5MiB`, `2GB` (K/M/G are binary, as in the report).
pub fn parse_bytes(text: &str) -> Option<f64> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.trim().parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => crate::util::KIB,
        "m" | "mb" | "mib" => crate::util::MIB,
        "g" | "gb" | "gib" => crate::util::GIB,
        _ => return None,
    };
    (n.is_finite() && n >= 0.0).then_some(n * mult)
}

pub(super) fn image_size(v: &str) -> Result<(u32, u32), String> {
    let (min, max) = (images::MIN_SIDE, images::MAX_SIDE);
    let expected =
        || format!("WIDTHxHEIGHT with each side from {min} to {max} pixels, e.g. 448x448");
    let (w, h) = v.trim().split_once(['x', 'X']).ok_or_else(expected)?;
    let side = |s: &str| s.parse::<u32>().ok().filter(|n| (min..=max).contains(n));
    match (side(w), side(h)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err(expected()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers_say_what_they_accept() {
        assert_eq!(
            whole("300", 3, 10, "n"),
            Err("n, a whole number from 3 to 10".into())
        );
        assert_eq!(whole("1_000", 3, 10_000, "n"), Ok(1000));
        assert_eq!(seconds("0.5", 0.0, 1.0), Ok(Duration::from_millis(500)));
        assert_eq!(seconds("2m", 0.0, 3600.0), Ok(Duration::from_secs(120)));
        assert!(seconds("-1", 0.0, 1.0).is_err());
        assert!(seconds("NaN", 0.0, 1.0).is_err());
        assert_eq!(image_size("64x48"), Ok((64, 48)));
        assert!(image_size("8x8").unwrap_err().contains("from 16"));
        assert_eq!(switch("yes"), Ok(true));
        assert!(switch("maybe").is_err());
        assert_eq!(parse_bytes("64KiB"), Some(65536.0));
        assert_eq!(parse_bytes("1.5 MiB"), Some(1.5 * 1048576.0));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("-1"), None);
    }
}
