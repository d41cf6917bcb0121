//! `dsproc report` and `dsproc run --report`: one self-contained HTML page per
//! version (every section, the manifest's numbers, user strings escaped, nothing
//! loaded from anywhere), rendered by headless Chromium without a console message.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{dsproc_at, skip, synthetic_jsonl};

const SECTIONS: [&str; 8] = ["summary", "funnel", "drops", "quarantine", "lengths", "languages", "checks", "history"];

/// Input file name with HTML metacharacters: the quarantine tables show it.
const INPUT: &str = "a<b>&c.jsonl";

const JOB: &str = "name = \"rep\"\n[input]\nuri = \"in/*.jsonl\"\n\
[[steps]]\nop = \"normalize\"\n\
[[steps]]\nop = \"dedup_exact\"\n\
[[steps]]\nop = \"filter\"\nwhere = \"length(text) >= 20\"\n\
[output]\nuri = \"out\"\nformat = \"parquet\"\nshard_size = \"64KiB\"\nmode = \"overwrite\"\n";

const CHECKS: &str = "[[checks]]\nname = \"sql\"\nquery = \"SELECT count(*) > 10 FROM output\"\n\
[[checks]]\nname = \"distribution\"\nrows_change = \"±50%\"\nmetric = \"psi\"\nmax = 5.0\n";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut o = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            o.push(',');
        }
        o.push(c);
    }
    o
}

/// The text of `<section id="ID">` … `</section>`.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html.find(&format!("<section id=\"{id}\">")).unwrap_or_else(|| panic!("no section {id}"));
    let end = html[start..].find("</section>").map(|e| start + e).unwrap_or(html.len());
    &html[start..end]
}

/// Checks a report page as written: sections, numbers, escaping, no external resources.
fn assert_page(html: &str, m: &serde_json::Value) {
    for id in SECTIONS {
        assert!(html.contains(&format!("<section id=\"{id}\"><h2>")), "no section {id}");
    }
    for bad in ["http://", "https://", "<link", "src=", "<script", "@import", "url(", "<iframe", "<object"] {
        assert!(!html.contains(bad), "the page references {bad:?}");
    }
    let rows = &m["rows"];
    let (rows_in, rows_out) = (rows["in"].as_u64().unwrap(), rows["out"].as_u64().unwrap());
    assert!(rows_in >= 1000, "the test wants thousands separators: {rows_in}");
    assert!(html.contains(&format!("id=\"rows-in\">{}<", thousands(rows_in))), "rows in {rows_in}");
    assert!(html.contains(&format!("id=\"rows-out\">{}<", thousands(rows_out))), "rows out {rows_out}");
    let drops = section(html, "drops");
    for (reason, n) in rows["dropped"].as_object().unwrap() {
        assert!(drops.contains(&format!("<code>{reason}</code>")), "drop reason {reason}");
        assert!(drops.contains(&thousands(n.as_u64().unwrap())), "{reason}: {n}");
    }
    let funnel = section(html, "funnel");
    for st in m["steps"].as_array().unwrap() {
        let op = st["op"].as_str().unwrap();
        assert!(funnel.contains(&format!("after step {}: {op}", st["step"])), "funnel step {op}");
        assert!(funnel.contains(&thousands(st["rows_out"].as_u64().unwrap())), "funnel {op} rows out");
    }
    let q = section(html, "quarantine");
    assert!(q.contains("a&lt;b&gt;&amp;c.jsonl"), "the input file, escaped, by file: {q}");
    assert!(!html.contains(INPUT), "an unescaped file name");
    assert!(q.contains("malformed JSON"), "{q}");
    assert!(q.contains(&format!("{} rows quarantined", rows["quarantined"])), "{q}");
    let lengths = section(html, "lengths");
    assert!(lengths.contains(&format!("of all {} rows", thousands(rows_out))), "{lengths}");
    assert!(lengths.contains("<svg") && lengths.contains("no tokens / n_tokens column"), "{lengths}");
    assert!(section(html, "languages").contains("no lang column"));
}

/// `DSPROC_CHROMIUM`, else `chromium` / `chromium-browser` on PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DSPROC_CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n))).find(|p| p.is_file())
}

/// Runs headless Chromium on `page` with `args`; killed after 120 s.
fn run_chromium(bin: &Path, profile: &Path, page: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(bin)
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let deadline = Instant::now() + Duration::from_secs(120);
    // Drain the pipes on threads so a chatty browser never blocks on a full pipe.
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut b).ok();
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut b).ok();
        b
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{} did not finish within 120 s on {}", bin.display(), page.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output { status, stdout: t_out.join().unwrap(), stderr: t_err.join().unwrap() }
}

/// Loads the page in headless Chromium: the DOM has every section and the row
/// counts, the page logs nothing to the console (no script errors, no blocked
/// loads), and a screenshot is a non-empty PNG of the window's size.
fn assert_renders(bin: &Path, work: &Path, page: &Path, m: &serde_json::Value) {
    let profile = work.join("chromium-profile");
    let o = run_chromium(bin, &profile, page, &["--dump-dom"]);
    assert!(o.status.success(), "chromium --dump-dom: {}", stderr(&o));
    let dom = String::from_utf8_lossy(&o.stdout);
    for id in SECTIONS {
        assert!(dom.contains(&format!("<section id=\"{id}\">")), "the DOM has no section {id}");
    }
    assert!(dom.contains(&format!("id=\"rows-in\">{}<", thousands(m["rows"]["in"].as_u64().unwrap()))));
    assert!(dom.contains(&format!("id=\"rows-out\">{}<", thousands(m["rows"]["out"].as_u64().unwrap()))));
    assert!(dom.matches("<svg").count() >= 5, "charts missing from the DOM");
    let log = stderr(&o);
    for line in log.lines() {
        assert!(
            !line.contains(":CONSOLE") && !line.contains("Uncaught") && !line.contains("console.error"),
            "the page wrote to the console: {line}"
        );
    }
    let shot = work.join("shot.png");
    let o =
        run_chromium(bin, &profile, page, &[&format!("--screenshot={}", shot.display()), "--window-size=1200,3000"]);
    assert!(o.status.success(), "chromium --screenshot: {}", stderr(&o));
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot {}: {e}\n{}", shot.display(), stderr(&o)));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "screenshot: {} bytes", png.len());
    let (w, h) =
        (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
    assert_eq!((w, h), (1200, 3000), "screenshot size");
}

#[test]
fn report_pages_are_self_contained_and_render_every_section() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    let input = d.join("in").join(INPUT);
    synthetic_jsonl(&input, 3000);
    let mut f = std::fs::OpenOptions::new().append(true).open(&input).unwrap();
    f.write_all(b"{not json\n{\"text\": 5\n").unwrap();
    drop(f);

    // Version 1: no checks. Version 2: the same data with checks, and the run's report.
    std::fs::write(d.join("job.toml"), JOB).unwrap();
    let o = dsproc_at(d, &["run", "job.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(d.join("job.toml"), format!("{JOB}{CHECKS}")).unwrap();
    let o = dsproc_at(d, &["run", "job.toml", "--report", "r2.html", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((run["version"].as_u64(), run["report"].as_str()), (Some(2), Some("r2.html")));
    let m = &run["manifest"];
    assert!(m["rows"]["quarantined"].as_u64().unwrap() == 2, "{}", m["rows"]);
    for reason in ["2:dedup_exact:duplicate", "3:filter:predicate"] {
        assert!(m["rows"]["dropped"][reason].as_u64().unwrap() > 0, "{reason}: {}", m["rows"]);
    }

    let o = dsproc_at(d, &["report", "out", "-o", "report.html"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(d.join("report.html")).unwrap();
    let r2 = std::fs::read_to_string(d.join("r2.html")).unwrap();
    assert_page(&html, m);
    assert_page(&r2, m);
    // The same page (but for the time it was generated, in the footer).
    assert_eq!(html.split("<footer>").next(), r2.split("<footer>").next(), "run --report and report differ");

    let summary = section(&html, "summary");
    assert!(summary.contains("status-current") && summary.contains(m["dataset_version"].as_str().unwrap()));
    let checks = section(&html, "checks");
    assert!(checks.contains("<code>sql</code>") && checks.contains("<code>distribution</code>"), "{checks}");
    assert!(checks.contains("psi of text_length") && checks.contains("within ±50%"), "{checks}");
    assert!(checks.contains("against version 1") && checks.contains("<svg"), "the distribution's bins: {checks}");
    assert!(!checks.contains("FAILED"), "{checks}");
    let history = section(&html, "history");
    assert!(history.contains("<svg") && history.contains(">superseded<") && history.contains(">current<"), "{history}");
    assert_eq!(history.matches("<tr").count(), 3, "a header and two versions: {history}");

    // An older version; unknown datasets and versions are errors like `inspect`'s.
    let o = dsproc_at(d, &["report", "out", "--version", "1", "-o", "v1.html", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v1 = std::fs::read_to_string(d.join("v1.html")).unwrap();
    assert!(section(&v1, "summary").contains("status-superseded"));
    assert!(section(&v1, "checks").contains("no [[checks]]"));
    let o = dsproc_at(d, &["report", "nowhere", "-o", "x.html"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no committed dataset"), "{}", stderr(&o));
    let o = dsproc_at(d, &["report", "out", "--version", "9", "-o", "x.html"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no version 9"), "{}", stderr(&o));
    assert!(!d.join("x.html").exists());

    let Some(bin) = chromium() else {
        skip("chromium is not installed (set DSPROC_CHROMIUM or put chromium on PATH; scripts/test.sh installs it)");
        return;
    };
    assert_renders(&bin, d, &d.join("report.html"), m);
    assert_renders(&bin, d, &d.join("r2.html"), m);
}
