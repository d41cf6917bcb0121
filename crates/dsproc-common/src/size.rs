//! Parsing of human byte sizes such as `"256MiB"`, `"1GB"` or `"512k"`.

/// Parses a byte size. Accepts a plain number of bytes or a number followed by
/// `B`, `K`/`KB`/`KiB`, `M`/`MB`/`MiB`, `G`/`GB`/`GiB`, `T`/`TB`/`TiB` (case
/// insensitive; decimal units are powers of 1000, `i` units powers of 1024,
/// bare `K`/`M`/`G`/`T` powers of 1024). Fractions are allowed (`"1.5GiB"`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected a number with an optional unit like 256MiB"))?;
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
        other => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
            ))
        }
    };
    let v = num * mult;
    if !v.is_finite() || v < 1.0 {
        return Err(format!("invalid size {s:?}: must be at least 1 byte"));
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
pub fn parse_shard_size(s: &str) -> Result<ShardSize, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let Some(count) = lower.strip_suffix("tokens") else { return parse_size(t).map(ShardSize::Bytes) };
    let count = count.trim();
    let split = count.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_')).unwrap_or(count.len());
    let (num, unit) = count.split_at(split);
    let num: f64 =
        num.replace('_', "").parse().map_err(|_| format!("invalid size {s:?}: expected e.g. \"200M tokens\""))?;
    let mult = match unit.trim() {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "b" | "g" => 1e9,
        "t" => 1e12,
        other => return Err(format!("invalid size {s:?}: unknown unit {other:?} (use k, M, B or T before `tokens`)")),
    };
    let v = num * mult;
    if !v.is_finite() || v < 1.0 {
        return Err(format!("invalid size {s:?}: must be at least 1 token"));
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
