//! Input and output formats.

use serde::{Deserialize, Serialize};

/// Input record format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    Jsonl,
    Parquet,
    Csv,
    Text,
}

impl InputFormat {
    /// Guesses the format from a file name (after stripping a compression suffix).
    pub fn from_path(path: &str) -> Option<Self> {
        let (stem, _) = Compression::strip(path);
        let ext = stem.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
        match ext.as_str() {
            "jsonl" | "ndjson" | "json" => Some(Self::Jsonl),
            "parquet" | "pq" => Some(Self::Parquet),
            "csv" => Some(Self::Csv),
            "txt" | "text" | "md" => Some(Self::Text),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Parquet => "parquet",
            Self::Csv => "csv",
            Self::Text => "text",
        }
    }
}

/// Stream compression of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Splits a compression suffix off a path.
    pub fn strip(path: &str) -> (&str, Self) {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".gz") {
            (&path[..path.len() - 3], Self::Gzip)
        } else if lower.ends_with(".zst") {
            (&path[..path.len() - 4], Self::Zstd)
        } else if lower.ends_with(".zstd") {
            (&path[..path.len() - 5], Self::Zstd)
        } else {
            (path, Self::None)
        }
    }
}

/// Output shard format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Parquet,
    Jsonl,
    /// Megatron-LM indexed dataset: a `.bin`/`.idx` pair per shard (needs `tokens`).
    Megatron,
    /// MosaicML streaming MDS: `.mds` shards plus `index.json` (needs `tokens`).
    Mds,
}

impl OutputFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Jsonl => "jsonl.zst",
            Self::Megatron => "bin",
            Self::Mds => "mds",
        }
    }

    /// Whether the format stores token ids (and so needs a `tokens` column).
    pub fn needs_tokens(self) -> bool {
        matches!(self, Self::Megatron | Self::Mds)
    }
}
