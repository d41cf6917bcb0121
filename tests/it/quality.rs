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
