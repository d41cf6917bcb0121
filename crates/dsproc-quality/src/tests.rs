use super::*;

fn all() -> QualityFilter {
    QualityFilter::new(
        ["c4", "gopher_quality", "gopher_repetition", "fineweb"]
            .iter()
            .map(|n| Preset::default_for(n).unwrap())
            .collect(),
    )
    .unwrap()
}

fn one(name: &str) -> QualityFilter {
    QualityFilter::new(vec![Preset::default_for(name).unwrap()]).unwrap()
}

const PROSE: &str = "The quick brown fox jumps over the lazy dog and runs into the forest. \
It was a bright cold day in April, and the clocks were striking thirteen. \
Call me Ishmael, and that is all you need to know about the story of the whale. \
It is a truth universally acknowledged that a single man must be in want of a wife. \
Happy families are all alike, but every unhappy family is unhappy in its own way. \
All this happened, more or less, to the people of the town with the old clock.";

fn lines_prose() -> String {
    PROSE.replace(". ", ".\n")
}

#[test]
fn sync_and_send() {
    fn is_sync<T: Sync + Send>() {}
    is_sync::<QualityFilter>();
}

#[test]
fn names() {
    let f = all();
    let rules = f.rule_names();
    assert!(rules.contains(&"gopher_short_doc"));
    assert!(rules.contains(&"gopher_below_alpha_threshold"));
    assert!(rules.contains(&"c4_too_few_sentences"));
    assert!(rules.contains(&"fineweb_line_punct_ratio"));
    assert!(rules.contains(&"gopher_repetition_top_2_gram"));
    assert!(rules.contains(&"gopher_repetition_duplicated_10_n_grams"));
    let mut dedup = rules.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), rules.len());
    assert_eq!(f.metric_names().len(), f.evaluate("x", None).metrics.len());
}

#[test]
fn prose_is_kept_by_all() {
    let f = all();
    let text = lines_prose();
    let o = f.evaluate(&text, None);
    assert!(o.keep, "{o:?}");
    assert_eq!(o.text, None);
    let names = f.metric_names();
    let at = names.iter().position(|n| *n == "c4_num_sentences").unwrap();
    assert_eq!(o.metrics[at], 6.0);
    assert!(o.metrics.iter().all(|m| !m.is_nan()), "{o:?}");
}

#[test]
fn c4_removes_lines_and_later_presets_see_it() {
    let mut text = lines_prose();
    text.push_str("\nshort line\nEnable javascript to see this page properly, please.\n");
    let o = one("c4").evaluate(&text, None);
    assert!(o.keep);
    assert_eq!(o.text.as_deref(), Some(lines_prose().as_str()));
    // fineweb alone sees the short lines; after c4 they are gone
    let chained = QualityFilter::new(vec![Preset::default_for("c4").unwrap(), Preset::default_for("fineweb").unwrap()])
        .unwrap()
        .evaluate(&text, None);
    assert!(chained.keep);
    let fw = one("fineweb").evaluate(&text, None);
    assert!(fw.metrics[1] > chained.metrics[3 + 1]);
}

#[test]
fn c4_drops() {
    let f = one("c4");
    assert_eq!(f.evaluate("a b", None).failed_rule, Some("c4_too_few_sentences"));
    let t = format!("{}\nLorem ipsum dolor sit amet.", lines_prose());
    assert_eq!(f.evaluate(&t, None).failed_rule, Some("c4_lorem_ipsum"));
    let t = format!("{}\nint main() {{ return 0; }}.", lines_prose());
    assert_eq!(f.evaluate(&t, None).failed_rule, Some("c4_curly_bracket"));
    // citations are removed before the punctuation check
    let t = format!("{}\nThis is cited here.[1]", lines_prose());
    let o = f.evaluate(&t, None);
    assert!(o.text.unwrap().ends_with("This is cited here."));
}

#[test]
fn gopher_rules() {
    let f = one("gopher_quality");
    assert_eq!(f.evaluate("", None).failed_rule, Some("gopher_short_doc"));
    assert_eq!(f.evaluate(PROSE, None).failed_rule, None);
    let hashes = format!("{PROSE} {}", "# ".repeat(20));
    assert_eq!(f.evaluate(&hashes, None).failed_rule, Some("gopher_too_many_hashes"));
    let bullets: String = PROSE.split(". ").map(|s| format!("- {s}.\n")).collect();
    assert_eq!(f.evaluate(&bullets, None).failed_rule, Some("gopher_too_many_bullets"));
    let r = one("gopher_repetition");
    let rep = format!("{PROSE}\n").repeat(3);
    assert_eq!(r.evaluate(&rep, None).failed_rule, Some("gopher_repetition_dup_line_frac"));
    assert_eq!(r.evaluate("", None).failed_rule, Some("gopher_repetition_empty"));
    let w = one("fineweb");
    assert_eq!(w.evaluate(" \n\t", None).failed_rule, Some("fineweb_empty"));
    assert_eq!(w.evaluate(PROSE, None).failed_rule, None);
    assert_eq!(w.evaluate("no punctuation here\nnor here", None).failed_rule, Some("fineweb_line_punct_ratio"));
}

#[test]
fn by_lang_thresholds() {
    let p: Preset = serde_json::from_str(
        r#"{"preset": "gopher_quality", "min_doc_words": 10, "by_lang": {"de": {"min_doc_words": 200}}}"#,
    )
    .unwrap();
    let f = QualityFilter::new(vec![p]).unwrap();
    assert!(f.evaluate(PROSE, Some("en")).keep);
    assert!(f.evaluate(PROSE, None).keep);
    assert_eq!(f.evaluate(PROSE, Some("de")).failed_rule, Some("gopher_short_doc"));
}

#[test]
fn options_serde() {
    // defaults round-trip and unknown keys are refused
    for name in ["gopher_quality", "gopher_repetition", "c4", "fineweb"] {
        let p = Preset::default_for(name).unwrap();
        let j = serde_json::to_string(&p).unwrap();
        let back: Preset = serde_json::from_str(&j).unwrap();
        assert_eq!(p, back);
        let bare: Preset = serde_json::from_str(&format!(r#"{{"preset": "{name}"}}"#)).unwrap();
        assert_eq!(bare, p);
        assert!(serde_json::from_str::<Preset>(&format!(r#"{{"preset": "{name}", "nope": 1}}"#)).is_err());
    }
    assert!(serde_json::from_str::<Preset>(r#"{"preset": "c4", "by_lang": {"fr": {"nope": 1}}}"#).is_err());
    let r: Preset = serde_json::from_str(r#"{"preset": "gopher_repetition", "top_n_grams": [[2, 0.5]]}"#).unwrap();
    let Preset::GopherRepetition(g) = &r else { panic!() };
    assert_eq!(g.top_n_grams, vec![(2, 0.5)]);
    let bad: Preset = serde_json::from_str(r#"{"preset": "gopher_repetition", "top_n_grams": [[0, 0.5]]}"#).unwrap();
    assert!(QualityFilter::new(vec![bad]).is_err());
    assert_eq!(QualityFilter::new(vec![]).err(), Some(Error::NoPresets));
    assert!(QualityFilter::new(vec![Preset::default_for("c4").unwrap(), Preset::default_for("c4").unwrap()]).is_err());
    let schema = schemars::schema_for!(Preset);
    let s = serde_json::to_string(&schema).unwrap();
    assert!(s.contains("min_doc_words") && s.contains("line_punct_thr") && s.contains("by_lang"));
}

/// No input makes any preset panic: random mixes of tricky characters, long lines,
/// control characters, huge words.
#[test]
fn no_panics_on_odd_input() {
    let f = all();
    let pieces = [
        "a",
        "The",
        " ",
        "  ",
        "\n",
        "\n\n",
        "\r\n",
        "\r",
        "\t",
        "\u{b}",
        "\u{c}",
        "\u{1c}",
        "\u{85}",
        "\u{2028}",
        "\u{a0}",
        "\u{3000}",
        ".",
        "...",
        "…",
        "!",
        "?",
        "#",
        "{",
        "}",
        "[1]",
        "[edit]",
        "-",
        "•",
        "'",
        "\"",
        "e.g.",
        "U.S.",
        ":)",
        "don't",
        "http://x.org/a.b",
        "5km",
        "$5",
        "°C.",
        "中文",
        "日本語。",
        "русский",
        "ﷺ",
        "👍🏽",
        "\u{0}",
        "\u{7f}",
        "\u{200b}",
        "\u{fffd}",
        "é",
        "e\u{301}",
        "İ",
        "ß",
        "𝔘𝔫𝔦",
        "a-b",
        "a--b",
        "1+2",
        "x/y",
        "A.B",
        "’s",
        "'S",
        "lorem ipsum",
        "javascript",
        "cookie policy",
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..2_000 {
        let n = (next() % 200) as usize;
        let mut s = String::new();
        for _ in 0..n {
            s.push_str(pieces[(next() % pieces.len() as u64) as usize]);
        }
        if round % 100 == 0 {
            s.push_str(&"x".repeat(5_000));
            s.push_str(&".".repeat(3_000));
        }
        let o = f.evaluate(&s, Some("xx"));
        assert_eq!(o.metrics.len(), f.metric_names().len());
        let _ = tokenizer::english().words(&s);
    }
    for s in ["", " ", "\n", "\u{0}", &"a".repeat(100_000), &"a ".repeat(60_000), &"-\n".repeat(5_000)] {
        for p in ["gopher_quality", "gopher_repetition", "c4", "fineweb"] {
            let _ = one(p).evaluate(s, None);
        }
    }
}

#[test]
fn threads_share_one_filter() {
    let f = std::sync::Arc::new(all());
    let text = lines_prose();
    let expect = f.evaluate(&text, None);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let f = f.clone();
            let t = text.clone();
            std::thread::spawn(move || f.evaluate(&t, None).keep)
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), expect.keep);
    }
}

/// Duplicated n-grams are compared as words joined without a separator (as datatrove
/// does), so "ab c" repeats "a bc"; top n-grams join with spaces and do not.
#[test]
fn ngram_joins_like_datatrove() {
    let p: Preset = serde_json::from_str(
        r#"{"preset": "gopher_repetition", "dup_line_frac": 0, "dup_para_frac": 0, "dup_line_char_frac": 0,
            "dup_para_char_frac": 0, "top_n_grams": [[2, 0.5]], "dup_n_grams": [[2, 0.3]]}"#,
    )
    .unwrap();
    let f = QualityFilter::new(vec![p]).unwrap();
    let o = f.evaluate("ab c a bc", None);
    assert_eq!(o.failed_rule, Some("gopher_repetition_duplicated_2_n_grams"));
    let names = f.metric_names();
    let top = names.iter().position(|n| *n == "gopher_repetition_top_2_gram_char_frac").unwrap();
    let dup = names.iter().position(|n| *n == "gopher_repetition_duplicated_2_n_grams_char_frac").unwrap();
    assert_eq!(o.metrics[top], 4.0 / 9.0); // "ab c" once, the first of the most common
    assert_eq!(o.metrics[dup], 3.0 / 9.0);
}
