//! Periods: the `--period` / `?period=` argument, and whether a period is
//! closed and of the configured length.

use chrono::{DateTime, Duration, Utc};
use ndxp_audit::reconcile::{Period, PeriodLength};

use super::MonitorError;
use crate::config::MonitoringConfig;

/// Parses a period argument: `2026-11-28` (that UTC day) or
/// `2026-11-28T10` (that UTC hour).
///
/// # Errors
/// [`MonitorError::BadPeriod`].
pub fn parse_period(s: &str) -> Result<Period, MonitorError> {
    let bad = || {
        MonitorError::BadPeriod(format!(
            "period {:?} is not a UTC day (2026-11-28) or hour (2026-11-28T10)",
            s.chars().take(40).collect::<String>()
        ))
    };
    let s = s.trim();
    let (day, hour) = match s.split_once('T') {
        Some((d, h)) => (d, Some(h)),
        None => (s, None),
    };
    let date = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| bad())?;
    if day.len() != 10 {
        return Err(bad());
    }
    match hour {
        None => {
            let t = date.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc();
            Ok(Period::day(t))
        }
        Some(h) => {
            if h.len() != 2 || !h.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let h: u32 = h.parse().map_err(|_| bad())?;
            let t = date.and_hms_opt(h, 0, 0).ok_or_else(bad)?.and_utc();
            Ok(Period::hour(t))
        }
    }
}

/// Whether `period` is a whole period of the configured length that ended
/// at least `grace_secs` before `now`.
pub fn is_closed(cfg: &MonitoringConfig, period: Period, now: DateTime<Utc>) -> bool {
    let grace = Duration::seconds(i64::try_from(cfg.grace_secs).unwrap_or(i64::MAX / 4_000_000));
    period.end() + grace <= now
}

/// Whether `period` is exactly one period of the configured length.
pub fn is_configured_period(cfg: &MonitoringConfig, period: Period) -> bool {
    Period::containing(cfg.period, period.start()) == period
}

pub(super) fn periods_in(length: PeriodLength, range: Period) -> Vec<Period> {
    let mut out = Vec::new();
    let mut p = Period::containing(length, range.start());
    while p.start() < range.end() && out.len() < 10_000 {
        if p.start() >= range.start() && p.end() <= range.end() {
            out.push(p);
        }
        p = Period::containing(length, p.end());
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[test]
    fn periods_parse_as_days_and_hours() {
        let at = |d, h| Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap();
        for (arg, start, end) in [
            ("2026-11-28", at(28, 0), at(29, 0)),
            ("2026-11-28T10", at(28, 10), at(28, 11)),
        ] {
            let p = parse_period(arg).unwrap();
            assert_eq!((p.start(), p.end()), (start, end), "{arg}");
        }
        for bad in [
            "",
            "2026-11",
            "2026-13-01",
            "2026-11-31",
            "2026-11-28T24",
            "2026-11-28T1",
            "2026-11-28T+1",
            "2026-1-28",
            "28-11-2026",
            "2026-11-28T10:00",
            " T ",
        ] {
            assert!(parse_period(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn periods_in_a_day_by_hour() {
        let day = parse_period("2026-11-28").unwrap();
        let hours = periods_in(PeriodLength::Hour, day);
        assert_eq!(hours.len(), 24);
        assert_eq!(periods_in(PeriodLength::Day, day), vec![day]);
        let hour = parse_period("2026-11-28T10").unwrap();
        assert!(periods_in(PeriodLength::Day, hour).is_empty());
        let minutes = periods_in(PeriodLength::Minute, hour);
        assert_eq!(minutes.len(), 60);
        assert_eq!(minutes[59].end(), hour.end());
    }

    proptest! {
        #[test]
        fn parse_period_never_panics(s in ".{0,40}") {
            let _ = parse_period(&s);
        }

        #[test]
        fn parse_period_round_trips(days in 0i64..40_000, hour in 0u32..24) {
            let t = Utc.with_ymd_and_hms(1970, 1, 1, hour, 0, 0).unwrap() + Duration::days(days);
            let d = parse_period(&t.format("%Y-%m-%d").to_string()).unwrap();
            prop_assert_eq!(d, Period::day(t));
            let h = parse_period(&t.format("%Y-%m-%dT%H").to_string()).unwrap();
            prop_assert_eq!(h, Period::hour(t));
        }
    }
}
