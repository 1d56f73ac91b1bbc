//! Durations in the configuration. Every duration key takes a number of seconds (`600`) or a
//! string with units (`"500ms"`, `"10s"`, `"5m"`, `"24h"`, `"7d"`, `"1h 30m"`), in the file, a
//! flag or a variable; one unit for bare numbers everywhere.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A configured duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Span(Duration);

impl Span {
    pub(crate) const fn secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }

    pub(crate) const fn millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    pub(crate) const fn from_duration(d: Duration) -> Self {
        Self(d)
    }

    pub(crate) const fn get(self) -> Duration {
        self.0
    }

    /// Whole seconds (rounded down).
    pub(crate) const fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(n) = s.parse::<u64>() {
            return Ok(Self::secs(n));
        }
        humantime::parse_duration(s).map(Self).map_err(|e| {
            format!(
                "{e}: give seconds (`600`) or a duration with units (`500ms`, `10s`, `5m`, `24h`)"
            )
        })
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.subsec_nanos() == 0 {
            write!(f, "{}", self.0.as_secs())
        } else {
            write!(f, "{}", humantime::format_duration(self.0))
        }
    }
}

/// Whole seconds as a number (as the reference and `check-config` show them), anything finer as
/// a string with units; both read back to the same value.
impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.subsec_nanos() == 0 {
            s.serialize_u64(self.0.as_secs())
        } else {
            s.serialize_str(&humantime::format_duration(self.0).to_string())
        }
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Span;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("seconds (`600`) or a duration with units (`500ms`, `10s`, `24h`)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Span, E> {
                Ok(Span::secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Span, E> {
                u64::try_from(v)
                    .map(Span::secs)
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Span, E> {
                Duration::try_from_secs_f64(v).map(Span).map_err(|_| {
                    E::custom("a duration must be a finite number of seconds, 0 or more")
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Span, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_numbers_are_seconds_and_units_are_read() {
        assert_eq!("600".parse::<Span>().unwrap(), Span::secs(600));
        assert_eq!("500ms".parse::<Span>().unwrap(), Span::millis(500));
        assert_eq!("24h".parse::<Span>().unwrap(), Span::secs(86_400));
        assert_eq!("1h 30m".parse::<Span>().unwrap(), Span::secs(5_400));
        assert!("ten".parse::<Span>().unwrap_err().contains("10s"));
        assert!("-5".parse::<Span>().is_err());
    }

    #[test]
    fn serialized_values_read_back_the_same() {
        for s in [Span::secs(10), Span::millis(1500), Span::secs(0)] {
            let v = serde_json::to_value(s).unwrap();
            assert_eq!(serde_json::from_value::<Span>(v).unwrap(), s);
        }
        assert_eq!(serde_json::to_value(Span::secs(10)).unwrap(), 10);
        assert_eq!(
            serde_json::to_value(Span::millis(1500)).unwrap(),
            "1s 500ms"
        );
    }
}
