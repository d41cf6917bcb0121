//! `embed_jsonl MODEL_DIR DOCS.jsonl OUT.jsonl [MAX_TOKENS]`: embeds the `text` of
//! every line, writes `{"id", "vector"}` lines and prints the throughput (a peer of
//! `tests/compat/embed_reference.py` for `benches/embed_peers.py`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: embed_jsonl MODEL_DIR DOCS.jsonl OUT.jsonl [MAX_TOKENS]".into());
    }
    let max_tokens: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(256);
    let e = dsproc_embed::Embedder::load(std::path::Path::new(&args[1]))?;
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&args[2])?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let texts: Vec<&str> = rows.iter().map(|r| r["text"].as_str().unwrap_or("")).collect();
    let t = std::time::Instant::now();
    let v = e.embed(&texts, max_tokens)?;
    let secs = t.elapsed().as_secs_f64();
    let mut out = String::new();
    for (r, v) in rows.iter().zip(&v) {
        out.push_str(&serde_json::json!({"id": r["id"], "vector": v}).to_string());
        out.push('\n');
    }
    std::fs::write(&args[3], out)?;
    println!("{}", serde_json::json!({"docs": rows.len(), "seconds": secs, "docs_per_s": rows.len() as f64 / secs}));
    Ok(())
}
