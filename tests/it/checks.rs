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
