//! `MEMTEST_*` environment variables: the knobs of the scenario tests.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::ScenarioError;

/// The raw value of `var`, `None` when unset or empty.
pub(crate) fn var(var: &str) -> Option<String> {
    std::env::var(var)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn bad(var: &str, value: &str, expected: &str) -> ScenarioError {
    ScenarioError::Env {
        var: var.to_owned(),
        value: value.to_owned(),
        expected: expected.to_owned(),
    }
}

/// A parsed number (or anything `FromStr`), `None` when unset.
pub(crate) fn parse<T: FromStr>(name: &str, expected: &str) -> Result<Option<T>, ScenarioError> {
    match var(name) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| bad(name, &v, expected)),
    }
}

/// Seconds as a float (`0.1`, `600`).
pub(crate) fn seconds(name: &str) -> Result<Option<Duration>, ScenarioError> {
    match var(name) {
        None => Ok(None),
        Some(v) => match v.parse::<f64>() {
            Ok(s) => Duration::try_from_secs_f64(s)
                .map(Some)
                .map_err(|_| bad(name, &v, "a number of seconds, e.g. 0.1")),
            Err(_) => Err(bad(name, &v, "a number of seconds, e.g. 0.1")),
        },
    }
}

/// A boolean: 1/true/yes/on or 0/false/no/off.
pub(crate) fn flag(name: &str) -> Result<bool, ScenarioError> {
    match var(name).as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("0" | "false" | "no" | "off") => Ok(false),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some(v) => Err(bad(name, v, "1 or 0")),
    }
}

/// A path.
pub(crate) fn path(name: &str) -> Option<PathBuf> {
    var(name).map(PathBuf::from)
}

/// Split an argument string on whitespace, honouring single and double quotes (no other shell
/// syntax: nothing is expanded or executed).
pub(crate) fn split_args(name: &str, text: &str) -> Result<Vec<String>, ScenarioError> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started {
                    args.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            (None, c) => {
                cur.push(c);
                started = true;
            }
        }
    }
    if quote.is_some() {
        return Err(bad(name, text, "arguments with balanced quotes"));
    }
    if started {
        args.push(cur);
    }
    Ok(args)
}

/// A byte size: `65536`, `64KiB`, `64K`, `1.5MiB`, `2GB` (K/M/G are binary, as in the report).
pub fn parse_bytes(text: &str) -> Option<f64> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.trim().parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    (n.is_finite() && n >= 0.0).then_some(n * mult)
}

/// `MEMTEST_MAX_SLOPE`: `pattern=size,pattern=size`, e.g. `host.rss@tree=64KiB,gpu.*=1MiB`.
pub(crate) fn slope_overrides(name: &str) -> Result<Vec<(String, f64)>, ScenarioError> {
    let Some(text) = var(name) else {
        return Ok(Vec::new());
    };
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let (pattern, size) = item.split_once('=').ok_or_else(|| {
                bad(
                    name,
                    &text,
                    "pattern=size pairs, e.g. host.rss@tree=64KiB,gpu.proc@tree=1MiB",
                )
            })?;
            let bytes =
                parse_bytes(size).ok_or_else(|| bad(name, &text, "sizes like 64KiB or 1MiB"))?;
            Ok((pattern.trim().to_owned(), bytes))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_a_person_expects() {
        let got = split_args("X", r#"--a 1  --b "two words" --c='x y' ''"#).expect("split");
        assert_eq!(got, ["--a", "1", "--b", "two words", "--c=x y", ""]);
        assert!(split_args("X", "--a 'open").is_err());
        assert!(split_args("X", "   ").expect("split").is_empty());
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("65536"), Some(65536.0));
        assert_eq!(parse_bytes("64KiB"), Some(65536.0));
        assert_eq!(parse_bytes("1.5 MiB"), Some(1.5 * 1048576.0));
        assert_eq!(parse_bytes("2g"), Some(2.0 * 1073741824.0));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("-1"), None);
    }
}
