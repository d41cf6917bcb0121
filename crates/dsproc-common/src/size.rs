//! Parsing of human byte sizes such as `"256MiB"`, `"1GB"` or `"512k"`.

/// Why a size string was rejected; `input` is the string as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("invalid size {input:?}: expected a number with an optional unit like 256MiB")]
    NotANumber { input: String },
    #[error("invalid size {input:?}: unknown unit {unit:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)")]
    UnknownUnit { input: String, unit: String },
    #[error("invalid size {input:?}: must be at least 1 byte")]
    TooSmall { input: String },
    #[error("invalid size {input:?}: expected e.g. \"200M tokens\"")]
    NotATokenCount { input: String },
    #[error("invalid size {input:?}: unknown unit {unit:?} (use k, M, B or T before `tokens`)")]
    UnknownTokenUnit { input: String, unit: String },
    #[error("invalid size {input:?}: must be at least 1 token")]
    TooFewTokens { input: String },
}

/// Parses a byte size. Accepts a plain number of bytes or a number followed by
/// `B`, `K`/`KB`/`KiB`, `M`/`MB`/`MiB`, `G`/`GB`/`GiB`, `T`/`TB`/`TiB` (case
/// insensitive; decimal units are powers of 1000, `i` units powers of 1024,
/// bare `K`/`M`/`G`/`T` powers of 1024). Fractions are allowed (`"1.5GiB"`).
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.replace('_', "").parse().map_err(|_| SizeError::NotANumber { input: s.to_string() })?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "kb" => 1e3,
        "m" | "mib" => 1024.0 * 1024.0,
        "mb" => 1e6,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "gb" => 1e9,
        "t" | "tib" => 1024f64.powi(4),
        "tb" => 1e12,
        other => return Err(SizeError::UnknownUnit { input: s.to_string(), unit: other.to_string() }),
    };
    let v = num * mult;
    if !v.is_finite() || v < 1.0 {
        return Err(SizeError::TooSmall { input: s.to_string() });
    }
    Ok(v as u64)
}

/// A shard size: bytes, or tokens when written `"<n> tokens"` (`"200M tokens"`,
/// `"1.5B tokens"`; k/M/B/G/T are powers of 1000 here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardSize {
    Bytes(u64),
    Tokens(u64),
}

/// Parses `output.shard_size`.
pub fn parse_shard_size(s: &str) -> Result<ShardSize, SizeError> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let Some(count) = lower.strip_suffix("tokens") else { return parse_size(t).map(ShardSize::Bytes) };
    let count = count.trim();
    let split = count.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_')).unwrap_or(count.len());
    let (num, unit) = count.split_at(split);
    let num: f64 = num.replace('_', "").parse().map_err(|_| SizeError::NotATokenCount { input: s.to_string() })?;
    let mult = match unit.trim() {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "b" | "g" => 1e9,
        "t" => 1e12,
        other => return Err(SizeError::UnknownTokenUnit { input: s.to_string(), unit: other.to_string() }),
    };
    let v = num * mult;
    if !v.is_finite() || v < 1.0 {
        return Err(SizeError::TooFewTokens { input: s.to_string() });
    }
    Ok(ShardSize::Tokens(v as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_token_sizes() {
        assert_eq!(parse_shard_size("200M tokens").unwrap(), ShardSize::Tokens(200_000_000));
        assert_eq!(parse_shard_size("1.5B tokens").unwrap(), ShardSize::Tokens(1_500_000_000));
        assert_eq!(parse_shard_size("4096 tokens").unwrap(), ShardSize::Tokens(4096));
        assert_eq!(parse_shard_size("256MiB").unwrap(), ShardSize::Bytes(256 << 20));
        assert!(parse_shard_size("2 parsecs tokens").is_err());
    }

    #[test]
    fn parses_units() {
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("1.5 GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("0").is_err());
    }
}

/// A duration that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}: use e.g. 30d, 12h, 90m, 45s")]
    Number(String),
    #[error("invalid duration {0:?}: the unit is one of s, m, h, d, w")]
    Unit(String),
}

/// Parses a duration such as `30d`, `12h`, `90m`, `45s` or `2w` (a bare number
/// is days) into seconds.
pub fn parse_duration_secs(s: &str) -> Result<u64, DurationError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| DurationError::Number(s.to_string()))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" | "" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(DurationError::Unit(s.to_string())),
    };
    Ok(n.saturating_mul(secs))
}
