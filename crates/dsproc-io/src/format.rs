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

/// Decides the input format of a listing, per file: by extension (after a
/// compression suffix), else, for plain files, by their first bytes (`PAR1` is
/// Parquet, `{` is JSONL). Every file must have the same format: a listing that
/// mixes formats is refused naming two files that differ, and with `given`
/// (`input.format`) a file whose extension says otherwise is refused.
pub async fn decide_input_format(
    store: &std::sync::Arc<dyn object_store::ObjectStore>,
    store_url: &str,
    files: &[crate::InputFile],
    given: Option<InputFormat>,
) -> Result<InputFormat, String> {
    use object_store::ObjectStoreExt;
    let shown = |f: &crate::InputFile| crate::store::shown(store_url, &f.path);
    let mut first: Option<(InputFormat, &crate::InputFile)> = None;
    for f in files {
        let by_name = InputFormat::from_path(&f.path);
        let format = match (by_name, given) {
            (Some(n), Some(g)) if n != g => {
                return Err(format!(
                    "input.format is \"{}\" but {} is {} by its name; narrow input.uri (e.g. *.{}) or move the file",
                    g.name(),
                    shown(f),
                    n.name(),
                    g.name()
                ))
            }
            (Some(n), _) => n,
            (None, Some(g)) => g,
            (None, None) => {
                let (_, compression) = Compression::strip(&f.path);
                let head = if compression == Compression::None && f.size > 0 {
                    let path = crate::store::object_path(&f.path);
                    store.get_range(&path, 0..f.size.min(512)).await.map(|b| b.to_vec()).map_err(|e| {
                        crate::policy::denial(&e).unwrap_or_else(|| {
                            crate::store::redact(&format!("cannot read the first bytes of {}: {e}", shown(f)))
                        })
                    })?
                } else {
                    Vec::new()
                };
                let body = crate::schema::strip_bom(&head);
                if body.starts_with(b"PAR1") {
                    InputFormat::Parquet
                } else if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
                    InputFormat::Jsonl
                } else {
                    return Err(format!(
                        "cannot tell the format of {} from its name or first bytes; set input.format (jsonl, parquet, csv or text)",
                        shown(f)
                    ));
                }
            }
        };
        match first {
            None => first = Some((format, f)),
            Some((g, other)) if g != format => {
                return Err(format!(
                    "the input mixes formats: {} is {} but {} is {}; narrow input.uri to one format (e.g. *.{})",
                    shown(other),
                    g.name(),
                    shown(f),
                    format.name(),
                    g.name()
                ))
            }
            Some(_) => {}
        }
    }
    Ok(first.map(|(f, _)| f).or(given).unwrap_or(InputFormat::Jsonl))
}
