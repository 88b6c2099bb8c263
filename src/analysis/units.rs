//! Numbers for a person: byte metrics in KiB/MiB/GiB, everything else as plain numbers.

use crate::tracker::metric::Unit;

/// A value (or a difference) in `unit`, e.g. `+3.2 MiB`.
pub(crate) fn fmt_value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Bytes => crate::util::signed_bytes(v),
        Unit::Count | Unit::Ratio => format!("{v:+.3}"),
    }
}

/// A rate per request in `unit`, e.g. `+64.0 KiB/request`.
pub(crate) fn fmt_per_request(unit: Unit, v: f64) -> String {
    format!("{}/request", fmt_value(unit, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(fmt_value(Unit::Bytes, 64.0 * 1024.0), "+64.0 KiB");
        assert_eq!(fmt_value(Unit::Bytes, -1.5 * 1024.0 * 1024.0), "-1.5 MiB");
        assert_eq!(fmt_value(Unit::Bytes, 12.0), "+12 B");
        assert_eq!(
            fmt_per_request(Unit::Bytes, 2.0 * 1024.0 * 1024.0),
            "+2.0 MiB/request"
        );
        assert_eq!(fmt_per_request(Unit::Ratio, 0.25), "+0.250/request");
    }
}
