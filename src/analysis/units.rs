//! Numbers for a person: byte metrics in KiB/MiB/GiB, everything else as plain numbers.

/// Whether a metric's values are bytes (host, GPU and `/dev/shm` metrics are).
pub(crate) fn is_bytes(metric: &str) -> bool {
    ["host.", "gpu.", "shm."]
        .iter()
        .any(|p| metric.starts_with(p))
}

/// A value (or a difference) in the metric's unit, e.g. `+3.2 MiB`.
pub(crate) fn fmt_value(metric: &str, v: f64) -> String {
    if is_bytes(metric) {
        fmt_bytes(v)
    } else {
        format!("{v:+.3}")
    }
}

/// A rate per request in the metric's unit, e.g. `+64.0 KiB/request`.
pub(crate) fn fmt_per_request(metric: &str, v: f64) -> String {
    format!("{}/request", fmt_value(metric, v))
}

/// Signed bytes with a binary unit that keeps 3 significant digits readable.
pub(crate) fn fmt_bytes(v: f64) -> String {
    crate::util::signed_bytes(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(fmt_bytes(64.0 * 1024.0), "+64.0 KiB");
        assert_eq!(fmt_bytes(-1.5 * 1024.0 * 1024.0), "-1.5 MiB");
        assert_eq!(fmt_bytes(12.0), "+12 B");
        assert_eq!(
            fmt_per_request("gpu.used@dev:0", 2.0 * 1024.0 * 1024.0),
            "+2.0 MiB/request"
        );
        assert_eq!(
            fmt_per_request("server.token_usage", 0.25),
            "+0.250/request"
        );
    }
}
