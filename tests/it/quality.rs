//! quality_filter and langid against their references: datatrove 0.10.1's
//! filters and the C++ fastText (fasttext-predict), run in the test venv
//! (`DSPROC_PYTHON`, set by scripts/test.sh) on committed real documents.

use std::collections::BTreeMap;
use std::path::Path;

use dsproc_runtime::Engine;

use crate::common::*;

/// sha256 of lid.176.ftz (scripts/fetch-models.sh).
const LID176_SHA256: &str = "8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83";

/// The Python of the test venv, or None (SKIP, a failure under CI).
fn python() -> Option<std::ffi::OsString> {
    let p = std::env::var_os("DSPROC_PYTHON");
    if p.is_none() {
        skip("DSPROC_PYTHON is not set (scripts/test.sh sets it)");
    }
    p
}

fn lid176() -> Option<std::path::PathBuf> {
    let m = models_dir().join("lid.176.ftz");
    if !m.exists() {
        skip(format!("{} is missing (scripts/fetch-models.sh)", m.display()));
        return None;
    }
    Some(m)
}

/// Runs a Python script of tests/compat and returns its JSONL output, by id.
fn reference(
    python: &std::ffi::OsStr,
    script: &str,
    args: &[&Path],
    extra: &[&str],
) -> BTreeMap<String, serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ref.jsonl");
    let mut cmd = std::process::Command::new(python);
    cmd.arg(repo().join("tests/compat").join(script));
    for a in args {
        cmd.arg(a);
    }
    cmd.arg(&out).args(extra);
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{script}: {}", String::from_utf8_lossy(&o.stderr));
    std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["id"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

fn by_id(rows: Vec<serde_json::Value>) -> BTreeMap<String, serde_json::Value> {
    rows.into_iter().map(|r| (r["id"].as_str().unwrap().to_string(), r)).collect()
}

#[test]
fn langid_labels_and_scores_equal_fasttext_predict() {
    big_stack_runtime().block_on(async {
        let (Some(python), Some(model)) = (python(), lid176()) else { return };
        let input = repo().join("datasets/multilingual/sample.jsonl");
        let want = reference(&python, "langid_reference.py", &[&model, &input], &["1"]);
        let dir = tempfile::tempdir().unwrap();
        let step = |extra: &str| format!("[[steps]]\nop = \"langid\"\nmodel = \"{}\"\n{extra}", model.display());
        let spec = |name: &str, extra: &str| {
            let spec = job(&input.display().to_string(), &step(extra), &dir.path().join(name), "jsonl");
            load(dir.path(), &spec.replace("[input]\n", "[input]\nid = \"id\"\n"))
        };
        let out = dir.path().join("all");
        let m = run(&spec("all", ""), Engine::Local, 2).await.unwrap();
        let got = by_id(read_jsonl_dataset(&out, &m));
        assert_eq!(got.len(), want.len(), "every document gets a prediction");
        let mut same = 0;
        let mut langs = std::collections::BTreeSet::new();
        for (id, w) in &want {
            let g = &got[id];
            let (wl, ws) = (w["labels"][0].as_str().unwrap(), w["scores"][0].as_f64().unwrap());
            langs.insert(wl.to_string());
            if g["lang"].as_str() == Some(wl) {
                same += 1;
                let gs = g["lang_score"].as_f64().unwrap();
                assert!((gs - ws).abs() <= 1e-4, "{id}: score {gs} vs fastText's {ws}");
            }
        }
        assert!(langs.len() >= 10, "the fixture holds {} languages", langs.len());
        assert!(same as f64 >= 0.999 * want.len() as f64, "top-1 equal on {same} of {}", want.len());

        // keep + min_score drop the others (reason `lang`), the same on Ballista.
        let filter = "keep = [\"en\", \"de\", \"fr\"]\nmin_score = 0.5\n";
        let expected: std::collections::BTreeSet<&String> = want
            .iter()
            .filter(|(_, w)| {
                ["en", "de", "fr"].contains(&w["labels"][0].as_str().unwrap())
                    && w["scores"][0].as_f64().unwrap() >= 0.5
            })
            .map(|(id, _)| id)
            .collect();
        let local = run(&spec("kept", filter), Engine::Local, 2).await.unwrap();
        let kept = by_id(read_jsonl_dataset(&dir.path().join("kept"), &local));
        assert_eq!(kept.keys().collect::<std::collections::BTreeSet<_>>(), expected);
        assert_eq!(local.rows.dropped.get("1:langid:lang").copied(), Some((want.len() - expected.len()) as u64));
        assert!(local.rows.balanced());
        let ballista = run(&spec("kept-ballista", filter), Engine::Standalone, 2).await.unwrap();
        assert_eq!(shard_digests(&local), shard_digests(&ballista));
        assert_eq!(local.rows, ballista.rows);
        assert_eq!(local.steps[0].info.as_ref().unwrap()["model_sha256"], LID176_SHA256);
    });
}

#[test]
fn langid_refuses_another_file_and_bad_options_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake.ftz");
    std::fs::write(&fake, b"not a model").unwrap();
    let input = repo().join("datasets/multilingual/sample.jsonl");
    let spec = job(
        &input.display().to_string(),
        &format!("[[steps]]\nop = \"langid\"\nmodel = \"{}\"\n", fake.display()),
        &dir.path().join("out"),
        "jsonl",
    );
    let p = dir.path().join("job.toml");
    std::fs::write(&p, &spec).unwrap();
    let o = dsproc_at(dir.path(), &["run", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("sha256") && err.contains(LID176_SHA256), "{err}");
    std::fs::write(&p, spec.replace("op = \"langid\"\n", "op = \"langid\"\nmin_score = 2.0\n")).unwrap();
    let o = dsproc_at(dir.path(), &["validate", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("min_score"), "{err}");
}

const PRESETS: [&str; 4] = ["gopher_quality", "gopher_repetition", "c4", "fineweb"];

/// datatrove's reason for our rule name (datatrove's gopher_quality reasons carry
/// the `gopher_` prefix already; the others are prefixed with the preset here).
fn datatrove_reason(preset: &str, rule: &str) -> String {
    match preset {
        "gopher_quality" => rule.to_string(),
        p => rule.strip_prefix(p).and_then(|r| r.strip_prefix('_')).unwrap_or(rule).to_string(),
    }
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// Each preset's keep/drop decision and reason equal datatrove 0.10.1's, run live on
/// the committed real documents (kernel docs and sources, changelogs, licences, man
/// pages); c4's rewritten texts are datatrove's; drops are counted per rule.
#[test]
fn quality_filter_decides_like_datatrove() {
    big_stack_runtime().block_on(async {
        let Some(python) = python() else { return };
        let input = repo().join("datasets/quality/sample.jsonl");
        let want = reference(&python, "datatrove_quality.py", &[&input], &[]);
        let dir = tempfile::tempdir().unwrap();
        let spec = |name: &str, steps: String| {
            let spec = job(&input.display().to_string(), &steps, &dir.path().join(name), "jsonl");
            load(dir.path(), &spec.replace("[input]\n", "[input]\nid = \"id\"\n"))
        };
        for preset in PRESETS {
            // tag: every row with its decision
            let steps = format!("[[steps]]\nop = \"quality_filter\"\npresets = [\"{preset}\"]\naction = \"tag\"\n");
            let m = run(&spec(&format!("tag-{preset}"), steps), Engine::Local, 2).await.unwrap();
            let got = by_id(read_jsonl_dataset(&dir.path().join(format!("tag-{preset}")), &m));
            assert_eq!(got.len(), want.len());
            let (mut same, mut same_reason, mut dropped) = (0usize, 0usize, 0usize);
            for (id, w) in &want {
                let q = &got[id]["quality"];
                let keep = q["keep"].as_bool().unwrap();
                if keep == w[preset][0].as_bool().unwrap() {
                    same += 1;
                }
                if !keep {
                    dropped += 1;
                    let rule = q["rule"].as_str().unwrap();
                    if Some(datatrove_reason(preset, rule).as_str()) == w[preset][1].as_str() {
                        same_reason += 1;
                    }
                }
            }
            let n = want.len();
            assert!(same as f64 >= 0.995 * n as f64, "{preset}: keep/drop equal on {same} of {n}");
            assert!(
                same_reason as f64 >= 0.995 * dropped as f64,
                "{preset}: reason equal on {same_reason} of {dropped}"
            );
            assert!(dropped > 0 && dropped < n, "{preset}: the sample must hold kept and dropped documents");
            // drop: per-rule counts equal datatrove's reasons; c4's rewritten texts equal
            let steps = format!("[[steps]]\nop = \"quality_filter\"\npresets = [\"{preset}\"]\n");
            let m = run(&spec(&format!("drop-{preset}"), steps), Engine::Local, 2).await.unwrap();
            let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
            for w in want.values().filter(|w| !w[preset][0].as_bool().unwrap()) {
                *by_reason.entry(w[preset][1].as_str().unwrap().to_string()).or_default() += 1;
            }
            let ours: BTreeMap<String, u64> = m
                .rows
                .dropped
                .iter()
                .map(|(k, v)| (datatrove_reason(preset, k.strip_prefix("1:quality_filter:").unwrap()), *v))
                .collect();
            assert_eq!(ours, by_reason, "{preset}: drops by rule");
            assert!(m.rows.balanced());
            if preset == "c4" {
                let kept = by_id(read_jsonl_dataset(&dir.path().join("drop-c4"), &m));
                let original: BTreeMap<String, String> = std::fs::read_to_string(&input)
                    .unwrap()
                    .lines()
                    .map(|l| {
                        let v: serde_json::Value = serde_json::from_str(l).unwrap();
                        (v["id"].as_str().unwrap().to_string(), v["text"].as_str().unwrap().to_string())
                    })
                    .collect();
                let mut rewritten = 0;
                for (id, r) in &kept {
                    let text = r["text"].as_str().unwrap();
                    rewritten += usize::from(text != original[id]);
                    assert_eq!(Some(sha256_hex(text).as_str()), want[id]["c4"][2].as_str(), "{id}: c4's text");
                }
                assert!(rewritten > 0, "c4 removed no line from any kept document");
            }
        }
    });
}

/// `by_lang` thresholds apply to the rows of that language only; presets chain in
/// order; options of a preset that is not listed, and by_lang without a language
/// column, are errors naming the key.
#[test]
fn quality_filter_by_lang_thresholds_and_option_errors() {
    big_stack_runtime().block_on(async {
        let input = repo().join("datasets/quality/sample.jsonl");
        let dir = tempfile::tempdir().unwrap();
        let spec_in = |name: &str, steps: &str| {
            job(&input.display().to_string(), steps, &dir.path().join(name), "jsonl")
                .replace("[input]\n", "[input]\nid = \"id\"\n")
        };
        let base = "[[steps]]\nop = \"quality_filter\"\npresets = [\"gopher_quality\"]\naction = \"tag\"\n";
        let strict_fr = format!("{base}[steps.gopher_quality.by_lang.fr]\nmin_doc_words = 1000000000\n");
        let a = run(&load(dir.path(), &spec_in("a", base)), Engine::Local, 2).await.unwrap();
        let b = run(&load(dir.path(), &spec_in("b", &strict_fr)), Engine::Local, 2).await.unwrap();
        let (a, b) = (
            by_id(read_jsonl_dataset(&dir.path().join("a"), &a)),
            by_id(read_jsonl_dataset(&dir.path().join("b"), &b)),
        );
        let mut fr = 0;
        for (id, ra) in &a {
            let rb = &b[id];
            if ra["lang"] == "fr" {
                fr += 1;
                assert_eq!(rb["quality"]["rule"], "gopher_short_doc", "{id}");
            } else {
                assert_eq!(ra["quality"], rb["quality"], "{id}: another language's decision changed");
            }
        }
        assert!(fr > 0);
        let p = dir.path().join("bad.toml");
        let cases = [
            (format!("{base}[steps.c4]\nmin_num_sentences = 2\n"), "c4"),
            (format!("{base}[steps.gopher_quality]\nmin_doc_wordz = 2\n"), "min_doc_wordz"),
            (base.replace("[\"gopher_quality\"]", "[\"gopher\"]"), "presets"),
        ];
        for (steps, key) in cases {
            std::fs::write(&p, spec_in("bad", &steps)).unwrap();
            let o = dsproc_at(dir.path(), &["validate", p.to_str().unwrap()]);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{err}");
            assert!(err.contains(key), "{key}: {err}");
        }
        // by_lang needs the language column
        let no_lang = repo().join("datasets/sample/licenses.jsonl.gz");
        let steps = strict_fr.clone();
        let spec = job(&no_lang.display().to_string(), &steps, &dir.path().join("nolang"), "jsonl");
        std::fs::write(&p, spec).unwrap();
        let o = dsproc_at(dir.path(), &["run", p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("by_lang") && err.contains("lang"), "{err}");
    });
}
