//! `[[checks]]`: a version that fails an `error` check is recorded as rejected
//! (never current; `dsproc versions` shows it), the job exits 3 and names each
//! failed check with its value and threshold; `warn` checks only report; every
//! check's values land in the manifest.

use std::path::Path;
use std::process::{Command, Output};

fn dsproc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsproc")).current_dir(dir).args(args).output().unwrap()
}

fn write_docs(path: &Path, n: usize, with_email: bool) {
    let mut body = String::new();
    for i in 0..n {
        let mut text = format!("document {i} about things {}", "word ".repeat(i % 9 + 3));
        if with_email && i == 5 {
            text.push_str(" write to jane.roe@example.org");
        }
        body.push_str(&serde_json::json!({"id": format!("d{i}"), "text": text}).to_string());
        body.push('\n');
    }
    std::fs::write(path, body).unwrap();
}

const SPEC: &str = "name = \"chk\"\n[input]\nuri = \"in/*.jsonl\"\nid = \"id\"\n[[steps]]\nop = \"dedup_exact\"\n[output]\nuri = \"out\"\nformat = \"parquet\"\nmode = \"overwrite\"\n\
[[checks]]\nname = \"sql\"\nquery = \"SELECT count(*) > 150 FROM output\"\n\
[[checks]]\nname = \"distribution\"\nrows_change = \"±20%\"\nmetric = \"psi\"\n\
[[checks]]\nname = \"pii_residual\"\nseverity = \"SEV\"\n";

#[test]
fn a_version_failing_an_error_check_is_rejected_and_the_previous_one_stays_current() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    write_docs(&d.join("in/a.jsonl"), 200, true);
    // pii_residual as a warning: v1 is committed, the failure reported.
    std::fs::write(d.join("j.toml"), SPEC.replace("SEV", "warn")).unwrap();
    let o = dsproc(d, &["run", "j.toml", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(stderr.contains("check 3 (pii_residual, warn): FAILED"), "{stderr}");
    let v1: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let checks = v1["manifest"]["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 3);
    assert_eq!((checks[0]["name"].as_str(), checks[0]["passed"].as_bool()), (Some("sql"), Some(true)));
    assert_eq!(checks[1]["skipped"], "no baseline version to compare with");
    assert_eq!(checks[2]["passed"], false);
    assert_eq!(checks[2]["by_kind"]["email"], 1);
    assert!(checks[2]["per_million_chars"].as_f64().unwrap() > 0.0);

    // The same check as an error: exit 3, version 2 recorded as rejected, v1 current.
    std::fs::write(d.join("j.toml"), SPEC.replace("SEV", "error")).unwrap();
    let o = dsproc(d, &["run", "j.toml"]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        stderr.contains("version 2 rejected by its checks") && stderr.contains("version 1 stays current"),
        "{stderr}"
    );
    assert!(stderr.contains("PII detections per million characters (max 0"), "{stderr}");
    let current: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("out/manifest.json")).unwrap()).unwrap();
    assert_eq!(current["version"], 1);
    let v2: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("out/_versions/2.json")).unwrap()).unwrap();
    assert_eq!(v2["status"], "rejected");
    assert_eq!(v2["checks"][2]["passed"], false);
    let o = dsproc(d, &["versions", "out", "--json"]);
    let vs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let status =
        |n: u64| vs["versions"].as_array().unwrap().iter().find(|v| v["version"] == n).unwrap()["status"].clone();
    assert_eq!((status(1), status(2)), (serde_json::json!("current"), serde_json::json!("rejected")));
    let o = dsproc(d, &["rollback", "out", "2"]);
    assert_eq!(o.status.code(), Some(2), "a rejected version was made current");

    // Half the rows (and no PII): rows_change and the sql assertion fail against
    // the current version (v1, not the rejected v2).
    write_docs(&d.join("in/a.jsonl"), 100, false);
    let o = dsproc(d, &["run", "j.toml"]);
    assert_eq!(o.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(stderr.contains("rows 100 vs 200 in version 1 (-50.0%, bounds ±20%)"), "{stderr}");
    assert!(stderr.contains("check 1 (sql, error): FAILED"), "{stderr}");
    assert!(!stderr.contains("check 3 (pii_residual, error): FAILED"), "{stderr}");
    // Back to 200 clean rows: every check passes, version 4 is current.
    write_docs(&d.join("in/a.jsonl"), 200, false);
    let o = dsproc(d, &["run", "j.toml", "--json", "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v4: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v4["version"], 4);
    assert!(
        v4["manifest"]["checks"].as_array().unwrap().iter().all(|c| c["passed"] == true),
        "{}",
        v4["manifest"]["checks"]
    );
    assert_eq!(v4["manifest"]["checks"][1]["baseline_version"], 1);
    assert!(v4["manifest"]["checks"][1]["psi"]["value"].as_f64().unwrap() < 0.1);
}

/// PSI and Jensen-Shannon distance against scipy/numpy definitions on known
/// distributions: identical → 0; a shifted distribution → large.
#[test]
fn distribution_scores_are_zero_for_equal_data_and_grow_with_a_shift() {
    use dsproc_job::checks::Metric;
    let old: Vec<f64> = (0..1000).map(|i| (i % 100) as f64).collect();
    let (same, _) = dsproc_runtime::checks::compare(&old, &old, Metric::Psi);
    assert!(same.abs() < 1e-12);
    let shifted: Vec<f64> = old.iter().map(|x| x + 50.0).collect();
    let (psi, _) = dsproc_runtime::checks::compare(&old, &shifted, Metric::Psi);
    let (js, _) = dsproc_runtime::checks::compare(&old, &shifted, Metric::Js);
    assert!(psi > 1.0, "{psi}");
    assert!(js > 0.4 && js <= std::f64::consts::LN_2.sqrt() + 1e-9, "{js}");
}

/// `label_agreement` equals scikit-learn's `cohen_kappa_score` (per pair, all
/// three weightings), statsmodels' `fleiss_kappa` (items every annotator
/// labelled) and the `krippendorff` package (nominal, ordinal, interval) to 1e-9
/// on generated annotations with missing labels; a two-annotator set at κ ≈ 0.4
/// fails the default gate (exit 3).
#[test]
fn label_agreement_equals_sklearn_statsmodels_and_krippendorff() {
    let Some(py) = std::env::var_os("DSPROC_PYTHON") else {
        crate::common::skip("label_agreement: DSPROC_PYTHON is not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("three")).unwrap();
    std::fs::create_dir_all(d.join("two")).unwrap();
    let script = r#"
import json, sys, numpy as np
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa, aggregate_raters
import krippendorff
out = sys.argv[1]
rng = np.random.default_rng(7)
def make(n_items, n_ann, noise, missing):
    truth = rng.integers(0, 4, n_items)
    lab = np.where(rng.random((n_ann, n_items)) < noise, rng.integers(0, 4, (n_ann, n_items)), truth).astype(float)
    lab[rng.random((n_ann, n_items)) < missing] = np.nan
    return lab
three = make(400, 3, 0.35, 0.15)
two = make(500, 2, 0.36, 0.0)
def write(path, lab):
    with open(path, "w") as f:
        for a in range(lab.shape[0]):
            for i in range(lab.shape[1]):
                if not np.isnan(lab[a, i]):
                    f.write(json.dumps({"id": f"{i}-{a}", "item": f"item{i:04d}", "annotator": f"ann{a}", "label": int(lab[a, i]), "text": "x"}) + "\n")
write(out + "/three/a.jsonl", three)
write(out + "/two/a.jsonl", two)
ref = {"pairs": {}}
for w in [None, "linear", "quadratic"]:
    for a in range(3):
        for b in range(a + 1, 3):
            ok = ~np.isnan(three[a]) & ~np.isnan(three[b])
            ref["pairs"][f"ann{a}|ann{b}|{w or 'none'}"] = cohen_kappa_score(three[a][ok], three[b][ok], weights=w)
full = ~np.isnan(three).any(axis=0)
table, _ = aggregate_raters(three[:, full].T.astype(int))
ref["fleiss"] = fleiss_kappa(table, method="fleiss")
ref["fleiss_items"] = int(full.sum())
for level in ["nominal", "ordinal", "interval"]:
    ref["alpha_" + level] = krippendorff.alpha(reliability_data=three, level_of_measurement=level)
ok = ~np.isnan(two[0]) & ~np.isnan(two[1])
ref["two_kappa"] = cohen_kappa_score(two[0][ok], two[1][ok])
print(json.dumps(ref))
"#;
    let o = Command::new(py).args(["-c", script, d.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reference: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let check = |w: &str, level: &str| {
        format!("[[checks]]\nname = \"label_agreement\"\nitem = \"item\"\nannotator = \"annotator\"\nlabel = \"label\"\nweights = \"{w}\"\nlevel = \"{level}\"\nseverity = \"warn\"\n")
    };
    let spec = format!(
        "name = \"agree\"\n[input]\nuri = \"three/*.jsonl\"\nid = \"id\"\n[output]\nuri = \"out3\"\nformat = \"parquet\"\n{}{}{}",
        check("none", "nominal"),
        check("linear", "ordinal"),
        check("quadratic", "interval")
    );
    std::fs::write(d.join("three.toml"), spec).unwrap();
    let o = dsproc(d, &["run", "three.toml", "--json", "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let checks = m["manifest"]["checks"].as_array().unwrap().clone();
    let close = |a: &serde_json::Value, b: &serde_json::Value, what: &str| {
        let (a, b) = (a.as_f64().unwrap_or_else(|| panic!("{what}: {a}")), b.as_f64().unwrap());
        assert!((a - b).abs() < 1e-9, "{what}: dsproc {a} vs reference {b}");
    };
    for (c, (w, level)) in checks.iter().zip([("none", "nominal"), ("linear", "ordinal"), ("quadratic", "interval")]) {
        assert_eq!(c["annotators"], 3);
        for (pair, v) in c["pairs"].as_object().unwrap() {
            close(&v["kappa"], &reference["pairs"][format!("{pair}|{w}")], &format!("cohen {pair} {w}"));
        }
        close(&c["fleiss_kappa"], &reference["fleiss"], "fleiss");
        assert_eq!(c["fleiss_items"], reference["fleiss_items"]);
        close(&c["krippendorff_alpha"], &reference[format!("alpha_{level}")], &format!("alpha {level}"));
    }
    // Two annotators at κ ≈ 0.4: the default gate (Cohen's κ ≥ 0.6) rejects the version.
    let k = reference["two_kappa"].as_f64().unwrap();
    assert!((0.3..0.5).contains(&k), "generated κ {k}");
    std::fs::write(
        d.join("two.toml"),
        "name = \"agree2\"\n[input]\nuri = \"two/*.jsonl\"\nid = \"id\"\n[output]\nuri = \"out2\"\nformat = \"parquet\"\n[[checks]]\nname = \"label_agreement\"\nitem = \"item\"\nannotator = \"annotator\"\nlabel = \"label\"\n",
    )
    .unwrap();
    let o = dsproc(d, &["run", "two.toml"]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cohen_kappa") && err.contains("(min 0.6)"), "{err}");
    assert!(!d.join("out2/manifest.json").exists(), "a rejected first version became current");
}

/// `conflicting_duplicates`: near-copies (one word changed) with other labels
/// are counted, copies with the same label are not; the default gate (no such
/// pair) rejects the version, a looser `max_share` passes it.
#[test]
fn conflicting_duplicates_counts_near_copies_whose_labels_differ() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    let mut x: u64 = 99;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut text = || {
        (0..80)
            .map(|_| (0..4 + next() % 5).map(|_| (b'a' + (next() % 26) as u8) as char).collect::<String>())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut body = String::new();
    let mut row = |id: String, t: &str, label: &str| {
        body.push_str(&serde_json::json!({"id": id, "text": t, "label": label}).to_string());
        body.push('\n');
    };
    for i in 0..60 {
        let t = text();
        row(format!("p{i}"), &t, "good");
        if i < 20 {
            let mut w: Vec<&str> = t.split(' ').collect();
            w[40] = "changedword";
            // the first 10 near copies disagree, the next 10 agree
            row(format!("q{i}"), &w.join(" "), if i < 10 { "bad" } else { "good" });
        }
    }
    std::fs::write(d.join("in/a.jsonl"), body).unwrap();
    let spec = |extra: &str| {
        format!("name = \"cd\"\n[input]\nuri = \"in/*.jsonl\"\nid = \"id\"\n[output]\nuri = \"out\"\nformat = \"parquet\"\nmode = \"overwrite\"\n[[checks]]\nname = \"conflicting_duplicates\"\nlabel = \"label\"\n{extra}")
    };
    std::fs::write(d.join("j.toml"), spec("")).unwrap();
    let o = dsproc(d, &["run", "j.toml"]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("10 near-duplicate pairs with different labels"), "{err}");
    let v1: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("out/_versions/1.json")).unwrap()).unwrap();
    let c = &v1["checks"][0];
    assert_eq!((c["pairs"].as_u64(), c["rows_in_conflict"].as_u64()), (Some(10), Some(20)), "{c}");
    assert!((c["share"].as_f64().unwrap() - 20.0 / 80.0).abs() < 1e-12);
    assert_eq!(c["examples"].as_array().unwrap().len(), 5);
    std::fs::write(d.join("j.toml"), spec("max_share = 0.3\n")).unwrap();
    let o = dsproc(d, &["run", "j.toml", "--json", "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `distribution` on a categorical column (`lang`: the share of each value, a
/// value new in this version included) and on `token_count` of Megatron output
/// (the `.idx` lengths): the PSI equals a direct computation of
/// Σ (q − p)·ln(q / p) over the shares (each at least 1e-4); a shift fails the
/// check (exit 3, rejected), equal shares pass; a missing column is an error
/// naming it and the columns there are.
#[test]
fn distribution_compares_language_shares_and_megatron_token_counts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    let write = |shares: &[(&str, usize)]| {
        let mut body = String::new();
        let mut i = 0;
        for (lang, n) in shares {
            for _ in 0..*n {
                let text = format!("document {i} in {lang} {}", "word ".repeat(i % 7 + 2));
                body.push_str(&serde_json::json!({"id": format!("d{i}"), "text": text, "lang": lang}).to_string());
                body.push('\n');
                i += 1;
            }
        }
        std::fs::write(d.join("in/a.jsonl"), body).unwrap();
    };
    let spec = |column: &str| {
        format!(
            "name = \"langs\"\n[input]\nuri = \"in/*.jsonl\"\nid = \"id\"\n[output]\nuri = \"out\"\nformat = \"parquet\"\n\
             mode = \"overwrite\"\n[[checks]]\nname = \"distribution\"\nmetric = \"psi\"\ncolumn = \"{column}\"\n"
        )
    };
    std::fs::write(d.join("j.toml"), spec("lang")).unwrap();
    write(&[("en", 240), ("de", 120), ("fr", 40)]);
    let o = dsproc(d, &["run", "j.toml", "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // half the English replaced by a language the baseline does not have
    write(&[("en", 120), ("de", 120), ("fr", 40), ("es", 120)]);
    let o = dsproc(d, &["run", "j.toml"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("psi of lang"), "{err}");
    let v2: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("out/_versions/2.json")).unwrap()).unwrap();
    assert_eq!(v2["status"], "rejected");
    let psi = &v2["checks"][0]["psi"];
    let share = |x: f64| (x / 400.0).max(1e-4);
    let expected: f64 = [(240.0, 120.0), (120.0, 120.0), (40.0, 40.0), (0.0, 120.0)]
        .iter()
        .map(|(p, q)| (share(*q) - share(*p)) * (share(*q) / share(*p)).ln())
        .sum();
    assert!((psi["value"].as_f64().unwrap() - expected).abs() < 1e-12, "{psi} vs {expected}");
    assert_eq!(psi["bins"]["labels"], serde_json::json!(["en", "de", "fr", "es"]), "{psi}");
    // the same shares again (other documents): passes against v1
    write(&[("fr", 40), ("de", 120), ("en", 240)]);
    let o = dsproc(d, &["run", "j.toml", "--json", "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let c = &m["manifest"]["checks"][0];
    assert_eq!((c["passed"].as_bool(), c["baseline_version"].as_u64()), (Some(true), Some(1)), "{c}");
    assert!(c["psi"]["value"].as_f64().unwrap().abs() < 1e-12, "{c}");
    // a column no version has: an error naming it and the columns there are
    std::fs::write(d.join("j.toml"), spec("language")).unwrap();
    let o = dsproc(d, &["run", "j.toml"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("no column \"language\"") && err.contains("lang"), "{err}");

    // a numeric column half null in a new version: nulls are a bin of their own,
    // so the same non-null values with 50% nulls fail (they were left out before)
    let scores = |null_every: usize| {
        let body: String = (0..400)
            .map(|i| {
                let score = if null_every > 0 && i % null_every == 0 { None } else { Some(i % 10) };
                serde_json::json!({"id": format!("s{i}"), "text": format!("document {i}"), "lang": "en", "score": score})
                    .to_string()
                    + "\n"
            })
            .collect::<String>();
        std::fs::write(d.join("in/a.jsonl"), body).unwrap();
    };
    std::fs::write(d.join("j.toml"), spec("score").replace("uri = \"out\"", "uri = \"scores\"")).unwrap();
    scores(0);
    let o = dsproc(d, &["run", "j.toml", "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    scores(2);
    let o = dsproc(d, &["run", "j.toml"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(3), "half the scores null passed: {err}");
    let v2: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("scores/_versions/2.json")).unwrap()).unwrap();
    let bins = &v2["checks"][0]["psi"]["bins"];
    assert_eq!(bins["nulls"], serde_json::json!({"baseline": 0, "new": 200}), "{bins}");
    assert_eq!(bins["new"].as_array().unwrap().last().unwrap().as_f64(), Some(0.5), "{bins}");

    // token_count of Megatron output, from the .idx files
    let Some(tok) = std::env::var_os("DSPROC_TOKENIZERS") else {
        crate::common::skip("distribution token_count: DSPROC_TOKENIZERS is not set");
        return;
    };
    let tok = Path::new(&tok).join("bpe/tokenizer.json");
    let mega = format!(
        "name = \"toks\"\n[input]\nuri = \"in/*.jsonl\"\nid = \"id\"\n[[steps]]\nop = \"tokenize\"\ntokenizer = \"{}\"\n\
         [output]\nuri = \"mega\"\nformat = \"megatron\"\nmode = \"overwrite\"\n[[checks]]\nname = \"distribution\"\n\
         metric = \"js\"\ncolumn = \"token_count\"\nmax = 0.2\n",
        tok.display()
    );
    std::fs::write(d.join("m.toml"), mega).unwrap();
    let docs = |words: usize, prefix: &str| {
        let body: String = (0..300)
            .map(|i| {
                let text = format!("doc {i} {}", "alpha beta gamma ".repeat(i % 10 + words));
                serde_json::json!({"id": format!("{prefix}{i}"), "text": text}).to_string() + "\n"
            })
            .collect();
        std::fs::write(d.join("in/a.jsonl"), body).unwrap();
    };
    docs(1, "m");
    let o = dsproc(d, &["run", "m.toml", "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    docs(1, "n"); // other documents of the same lengths: passes
    let o = dsproc(d, &["run", "m.toml", "--json", "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let js = &m["manifest"]["checks"][0]["js_distance"];
    assert_eq!(js["column"], "token_count", "{js}");
    assert!(js["value"].as_f64().unwrap() < 1e-12, "{js}");
    docs(30, "n"); // documents ten times longer: fails
    let o = dsproc(d, &["run", "m.toml"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("js_distance of token_count"), "{err}");
    // packed output: the .idx lengths are sequences of seq_len tokens, not
    // documents: an error, not a check that always passes
    let packed = std::fs::read_to_string(d.join("m.toml"))
        .unwrap()
        .replace("uri = \"mega\"", "uri = \"packed\"")
        .replace("op = \"tokenize\"", "op = \"tokenize\"\nappend_eos = true")
        .replace("mode = \"overwrite\"", "mode = \"overwrite\"\npack = { seq_len = 16 }");
    std::fs::write(d.join("p.toml"), packed).unwrap();
    let o = dsproc(d, &["run", "p.toml", "-q"]); // a first version: no baseline
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    docs(1, "p");
    let o = dsproc(d, &["run", "p.toml"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("packed sequences (output.pack)"), "{err}");
}

/// A cluster job's checks run on its engine: on Ballista standalone (queries
/// planned, serialised and run by the executors, dsproc's UDFs included) every
/// check value of two versions equals the local engine's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checks_on_ballista_equal_the_local_engines() {
    use crate::common::{load, run, synthetic_jsonl};
    use dsproc_runtime::Engine;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let checks = "[[checks]]\nname = \"sql\"\nquery = \"SELECT (SELECT count(*) FROM output) >= (SELECT count(*) FROM baseline) / 2\"\n\
        [[checks]]\nname = \"pii_residual\"\nseverity = \"warn\"\n\
        [[checks]]\nname = \"distribution\"\nrows_change = \"±90%\"\nmetric = \"psi\"\nmax = 10.0\n\
        [[checks]]\nname = \"distribution\"\nmetric = \"js\"\ncolumn = \"source\"\nmax = 1.0\n\
        [[checks]]\nname = \"conflicting_duplicates\"\nlabel = \"source\"\nmax_share = 1.0\n";
    let mut all = Vec::new();
    for engine in [Engine::Local, Engine::Standalone] {
        let out = dir.path().join(format!("out-{}", engine.name()));
        let spec = format!(
            "name = \"c\"\n[input]\nuri = \"{}/*.jsonl\"\n[[steps]]\nop = \"normalize\"\n[output]\nuri = \"{}\"\nformat = \"parquet\"\n\
             mode = \"overwrite\"\n{checks}",
            input.display(),
            out.display()
        );
        let mut versions = Vec::new();
        for n in [300, 240] {
            synthetic_jsonl(&input.join("a.jsonl"), n);
            let m = run(&load(dir.path(), &spec), engine.clone(), 2).await.unwrap();
            assert_eq!(m.checks.len(), 5, "{:?}", m.checks);
            versions.push(m.checks);
        }
        let second = &versions[1];
        assert!(
            second.iter().all(|c| c["passed"] == true && c.get("error").is_none()),
            "{}: {second:?}",
            engine.name()
        );
        assert!(second[3]["js_distance"]["value"].as_f64().is_some(), "{second:?}");
        assert!(second[4]["pairs"].as_u64().unwrap() > 0, "{second:?}");
        all.push(versions);
    }
    assert_eq!(all[0], all[1], "check values differ between the local engine and Ballista");
}
