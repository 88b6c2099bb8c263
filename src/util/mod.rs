//! Small helpers shared by several modules.

pub(crate) mod env;

/// Serialize a `Duration` as integer milliseconds.
pub(crate) mod serde_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().min(u64::MAX as u128) as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// A secret (an API key): `Debug` and `Display` print `<redacted>`, and it is never serialized
/// (a field holding it is skipped or written as `null`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Serialize an `Option<Duration>` as integer milliseconds or `null`.
pub(crate) mod serde_opt_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serde_ms::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|o| o.map(Duration::from_millis))
    }
}

/// Write `bytes` to `path` atomically (a temp file in the same folder, synced, then renamed: a
/// reader sees the old file or the new one, never half of one), mode 0644 so that a CI artifact
/// uploader or a browser running as another user can read it. Creates the folder.
///
/// # Errors
/// The I/O error of the step that failed.
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".memtest-")
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Serialize an `f64` that may be NaN ("no data"): NaN and infinities are written as `null`
/// (JSON has no NaN) and `null` reads back as NaN.
pub(crate) mod nan_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Option::<f64>::deserialize(d).map(|v| v.unwrap_or(f64::NAN))
    }
}

/// Serialize a `Vec<f64>` whose NaNs ("no data") are written as `null`.
pub(crate) mod nan_null_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.is_finite().then_some(*x)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Vec::<Option<f64>>::deserialize(d)
            .map(|v| v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
    }
}

/// `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off` (empty: on, as a bare switch).
pub(crate) fn switch(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "" | "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("1 or 0".into()),
    }
}

/// A value that cannot be used: one sentence saying what would be accepted (`a whole number
/// from 1 to 8`, `the weights sum to 1.2, past 1`). The error of the public functions that check
/// a value a person wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<String> for Invalid {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<Invalid> for String {
    fn from(e: Invalid) -> Self {
        e.0
    }
}

impl From<&str> for Invalid {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// A whole number from `min` to `max` (`_` allowed between digits); `Err` names `what`.
pub(crate) fn whole(v: &str, min: u64, max: u64, what: &str) -> Result<u64, String> {
    let expected = || format!("{what}, a whole number from {min} to {max}");
    let n: u64 = v.trim().replace('_', "").parse().map_err(|_| expected())?;
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(expected())
    }
}

/// `v` trimmed, when not empty; `Err` names `what`.
pub(crate) fn nonempty(v: &str, what: &str) -> Result<String, String> {
    let t = v.trim();
    if t.is_empty() {
        Err(format!("{what}, not empty"))
    } else {
        Ok(t.to_owned())
    }
}

/// `1.5 MiB`, `12.0 KiB`, `3 B`: bytes for a person (signed).
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if !bytes.is_finite() {
        return "n/a".into();
    }
    let sign = if bytes < 0.0 { "-" } else { "" };
    let mut v = bytes.abs();
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{sign}{v:.0} B")
    } else if unit >= 3 {
        format!("{sign}{v:.2} {}", UNITS[unit])
    } else {
        format!("{sign}{v:.1} {}", UNITS[unit])
    }
}

/// What a series measures; decides how it is shown and which thresholds apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Bytes (host RSS/PSS/USS, GPU memory, `/dev/shm`).
    Bytes,
    /// A plain count (files, requests, tokens).
    Count,
    /// A ratio in `[0, 1]` (token usage, cache hit rate).
    Ratio,
}

/// A kibibyte, in the `f64` the statistics and the plots count bytes in.
pub const KIB: f64 = 1024.0;
/// A mebibyte.
pub const MIB: f64 = 1024.0 * KIB;
/// A gibibyte.
pub const GIB: f64 = 1024.0 * MIB;

/// `+1.5 MiB`, `-12 B`: a difference in bytes, with its sign always shown (`+0 B` for zero).
pub fn signed_bytes(bytes: f64) -> String {
    let s = human_bytes(bytes);
    if bytes >= 0.0 { format!("+{s}") } else { s }
}

/// `+0.98 .. +1.02 MiB`: both ends in one unit, with as many decimals (up to 3) as it takes for
/// them to differ.
pub fn byte_interval(lo: f64, hi: f64) -> String {
    if !(lo.is_finite() && hi.is_finite()) {
        return "n/a".into();
    }
    let m = lo.abs().max(hi.abs());
    let (div, name) = if m >= GIB {
        (GIB, "GiB")
    } else if m >= MIB {
        (MIB, "MiB")
    } else if m >= KIB {
        (KIB, "KiB")
    } else {
        (1.0, "B")
    };
    let (a, b) = (lo / div, hi / div);
    let (first, last) = if div == 1.0 { (0, 0) } else { (1, 3) };
    let mut text = String::new();
    for d in first..=last {
        let (x, y) = (format!("{a:+.d$}"), format!("{b:+.d$}"));
        text = format!("{x} .. {y} {name}");
        if x != y {
            break;
        }
    }
    text
}

/// `950`, `12.3 k`, `4.3 M`, `2.1 G`: a large count for a person.
pub fn human_count(n: f64) -> String {
    let a = n.abs();
    if a < 1e4 {
        format!("{n:.0}")
    } else if a < 1e6 {
        format!("{:.1} k", n / 1e3)
    } else if a < 1e9 {
        format!("{:.1} M", n / 1e6)
    } else {
        format!("{:.1} G", n / 1e9)
    }
}

/// An error and its sources, `: `-joined, skipping a source whose text the message already
/// holds (reqwest's own message hides "connection refused" in its source).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{human_bytes, signed_bytes};

    #[test]
    fn secrets_do_not_show() {
        let s = super::Secret::new("sk-123");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "sk-123");
    }

    #[test]
    fn counts() {
        assert_eq!(super::human_count(950.0), "950");
        assert_eq!(super::human_count(4_311_093.0), "4.3 M");
    }

    #[test]
    fn signed() {
        assert_eq!(signed_bytes(65536.0), "+64.0 KiB");
        assert_eq!(signed_bytes(-12.0), "-12 B");
    }

    #[test]
    fn human() {
        assert_eq!(human_bytes(3.0), "3 B");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
        assert_eq!(human_bytes(-1048576.0), "-1.0 MiB");
        assert_eq!(human_bytes(f64::NAN), "n/a");
        assert_eq!(human_bytes(2.5 * 1073741824.0), "2.50 GiB");
    }
}
