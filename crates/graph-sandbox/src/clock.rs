//! The sandbox's clock: the real clock shifted by `--clock-offset` (e.g. `+365d`, `-365d`), so
//! that a client can be tested against a peer whose clock disagrees with its own.
//!
//! Everything the sandbox treats as "now" reads [`crate::server::Shared::now`]: the `Date`
//! header of every response (RFC 9110 section 6.6.1: the origin server's clock when it made the
//! response; hyper would add one from the real clock, so [`date_header`] sets it first), the
//! `lastPasswordChangeDateTime` it sets on writes, resetPassword operations' `createdDateTime` /
//! `lastActionDateTime`, error bodies' `innerError.date`, and the `iat`/`nbf`/`exp` of the
//! access tokens it issues and checks. Nothing the sandbox decides depends on the client's
//! clock, as nothing Graph decides does.

use axum::extract::{Request, State};
use axum::http::header::{HeaderValue, DATE};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};

use crate::server::AppState;

/// Parses a clock offset: a sign, a whole number and a unit (`d`, `h`, `m`, `s`), or `0`.
/// `+365d` puts the sandbox's clock a year ahead of the real one, `-365d` a year behind.
pub fn parse_offset(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::zero());
    }
    let bad = || {
        format!("'{s}' is not a clock offset: a sign, a whole number and d, h, m or s (e.g. +365d, -2h)")
    };
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => return Err(bad()),
    };
    let unit = rest.chars().last().ok_or_else(bad)?;
    let digits = &rest[..rest.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let number: i64 = digits.parse().map_err(|_| bad())?;
    let seconds_per = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return Err(bad()),
    };
    // at most 100 years either way
    if number > 36_500 * 86_400 / seconds_per {
        return Err(format!("clock offset '{s}' is larger than 100 years"));
    }
    let seconds = number * seconds_per;
    Ok(Duration::seconds(if negative { -seconds } else { seconds }))
}

/// `now` as an HTTP-date (IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(now: DateTime<Utc>) -> String {
    now.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Sets the `Date` header of every response to the sandbox's clock (outermost layer).
pub async fn date_header(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&http_date(state.now())) {
        resp.headers_mut().insert(DATE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse() {
        assert_eq!(parse_offset("+365d").unwrap(), Duration::days(365));
        assert_eq!(parse_offset("-365d").unwrap(), Duration::days(-365));
        assert_eq!(parse_offset("+2h").unwrap(), Duration::hours(2));
        assert_eq!(parse_offset("-90s").unwrap(), Duration::seconds(-90));
        assert_eq!(parse_offset("0").unwrap(), Duration::zero());
        for bad in ["365d", "+d", "+1y", "", "+-1d", "+99999999d"] {
            assert!(parse_offset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_dates_are_imf_fixdate() {
        let t: DateTime<Utc> = "1994-11-06T08:49:37Z".parse().unwrap();
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
