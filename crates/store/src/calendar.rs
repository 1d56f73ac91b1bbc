//! UTC calendar arithmetic for quota periods and usage reports: days since 1970 to dates and
//! back, the bounds of a day or month, `YYYY-MM-DD` text.

use crate::QuotaPeriod;

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `[start, end)` in unix seconds of the day or month (UTC) containing `now`.
pub fn period_bounds(period: QuotaPeriod, now: i64) -> (i64, i64) {
    let day = now.div_euclid(86_400);
    if period == QuotaPeriod::Day {
        return (day * 86_400, (day + 1) * 86_400);
    }
    let (y, m, _) = civil_from_days(day);
    let start = days_from_civil(y, m, 1);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (start * 86_400, days_from_civil(ny, nm, 1) * 86_400)
}

/// The first hour (unix time / 3600) of the UTC month containing `hour`.
pub fn month_start(hour: i64) -> i64 {
    let (y, m, _) = civil_from_days((hour * 3600).div_euclid(86_400));
    days_from_civil(y, m, 1) * 24
}

/// `YYYY-MM-DD` of a unix time.
pub fn date_string(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses `YYYY-MM-DD` to the unix time of its midnight (UTC).
pub fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2026, 11, 24), 20_781);
        assert_eq!(civil_from_days(20_781), (2026, 11, 24));
        // 2026-11-24T12:00:00Z: November 2026.
        let now = 20_781 * 86_400 + 43_200;
        assert_eq!(
            period_bounds(QuotaPeriod::Month, now),
            (
                days_from_civil(2026, 11, 1) * 86_400,
                days_from_civil(2026, 12, 1) * 86_400
            )
        );
        assert_eq!(
            period_bounds(QuotaPeriod::Day, now),
            (20_781 * 86_400, 20_782 * 86_400)
        );
        let dec = days_from_civil(2026, 12, 31) * 86_400;
        assert_eq!(
            period_bounds(QuotaPeriod::Month, dec).1,
            days_from_civil(2027, 1, 1) * 86_400
        );
        assert_eq!(date_string(now), "2026-11-24");
        assert_eq!(parse_date("2026-11-24"), Some(20_781 * 86_400));
        assert_eq!(parse_date("2026-13-01"), None);
        assert_eq!(parse_date("x"), None);
    }
}
