//! Durations in files: humantime strings (`90s`, `30m`, `1h30m`) or whole seconds as a number.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, Visitor};

/// Parses `90s`, `30m`, `1h30m`, `1h 30m` or `2days`.
///
/// # Errors
///
/// Returns a lowercase sentence naming the bad text.
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration `{text}`: {e} (write it like `90s`, `30m` or `1h30m`)")
    })
}

/// Formats a duration the way files write it: `2h 15m`, `45s`, `0s`.
pub fn format(d: Duration) -> String {
    // Whole seconds keep messages short; sub-second estimates show milliseconds.
    let d = if d.as_secs() > 0 {
        Duration::from_secs(d.as_secs())
    } else {
        Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    humantime::format_duration(d).to_string()
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as `90s`, `30m` or `1h30m`, or whole seconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(format!("duration cannot be negative ({v})")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Duration::try_from_secs_f64(v).map_err(|_| {
            E::custom(format!(
                "duration must be a non-negative number of seconds, not {v}"
            ))
        })
    }
}

/// Deserialises a required duration.
///
/// # Errors
///
/// Fails on text humantime cannot parse, or on a negative number.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

/// Serialises a duration as humantime text.
///
/// # Errors
///
/// Only the serializer's own errors.
pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

/// `with` module for `Option<Duration>` fields.
pub mod option {
    use super::*;

    /// Deserialises an optional duration (`null` is `None`).
    ///
    /// # Errors
    ///
    /// As [`super::deserialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        struct Opt;
        impl<'de> Visitor<'de> for Opt {
            type Value = Option<Duration>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                DurationVisitor.expecting(f)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                super::deserialize(d).map(Some)
            }
        }
        d.deserialize_option(Opt)
    }

    /// Serialises an optional duration as humantime text or `null`.
    ///
    /// # Errors
    ///
    /// Only the serializer's own errors.
    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&format(*d)),
            None => s.serialize_none(),
        }
    }
}

/// A [`Duration`] field as it is read from a file, for `#[serde(with = ...)]` and the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDuration(pub Duration);

impl<'de> serde::Deserialize<'de> for FileDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize(d).map(FileDuration)
    }
}

/// The JSON Schema of a duration field.
pub struct DurationSchema;

impl JsonSchema for DurationSchema {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: humantime text such as `90s`, `30m`, `1h30m`, or whole seconds.",
            "oneOf": [
                { "type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*[a-zA-Zµ]+(\\s*[0-9]+(\\.[0-9]+)?\\s*[a-zA-Zµ]+)*\\s*$" },
                { "type": "integer", "minimum": 0 }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse("soon").unwrap_err().contains("`soon`"));
    }

    #[test]
    fn formats_readably() {
        assert_eq!(format(Duration::from_secs(8100)), "2h 15m");
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_millis(1500)), "1s");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
    }
}
