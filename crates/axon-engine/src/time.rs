//! Timestamps: milliseconds since the Unix epoch inside, RFC 3339 outside.

/// Formats ms since the Unix epoch as RFC 3339 (UTC), e.g. `2026-11-25T14:50:00.123Z`.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| format!("@{ms}ms"), |t| t.to_string())
}
