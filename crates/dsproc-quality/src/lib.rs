//! Document quality filters that decide like datatrove 0.10.1's
//! `GopherQualityFilter`, `GopherRepetitionFilter`, `C4QualityFilter` and
//! `FineWebQualityFilter` with English text.
//!
//! Words and sentences come from a Rust port of spaCy 3.8's English tokenizer and
//! `sentencizer` (`spacy.blank("en")`, which datatrove uses for English), with the
//! tokenizer's data generated from spaCy by `gen/gen_tables.py`.
//!
//! Text in other languages is tokenized with the same English rules; datatrove would
//! pick another tokenizer for some languages (e.g. jieba for Chinese, SudachiPy for
//! Japanese, pythainlp for Thai, NLTK punkt or stanza for others), so word counts and
//! sentence counts, and hence decisions, can differ there. Per-language thresholds
//! (`by_lang`) still apply.
//!
//! ```
//! use dsproc_quality::{Preset, QualityFilter};
//! let f = QualityFilter::new(vec![
//!     Preset::default_for("c4").unwrap(),
//!     Preset::default_for("gopher_quality").unwrap(),
//! ])
//! .unwrap();
//! let out = f.evaluate("too short", None);
//! assert!(!out.keep);
//! assert_eq!(out.failed_rule, Some("c4_too_few_sentences"));
//! ```

pub mod chars;
mod filters;
mod names;
pub mod options;
pub mod pystr;
#[rustfmt::skip]
mod tables;
pub mod tokenizer;

use std::borrow::Cow;
use std::collections::BTreeMap;

pub use options::{
    C4Overrides, FineWeb, FineWebOverrides, GopherQuality, GopherQualityOverrides, GopherRepetition,
    GopherRepetitionOverrides, Preset, C4,
};

use filters::{C4Params, FwParams, GqParams, Verdict, Words};

/// An invalid filter configuration.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("quality_filter: no presets given")]
    NoPresets,
    #[error("quality_filter: preset `{0}` is given twice")]
    DuplicatePreset(&'static str),
    #[error("quality_filter: preset `{preset}`{lang}: {message}")]
    Invalid { preset: &'static str, lang: String, message: String },
}

/// The result of [`QualityFilter::evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Whether every preset kept the document.
    pub keep: bool,
    /// The first rule that dropped it (one of [`QualityFilter::rule_names`]).
    pub failed_rule: Option<&'static str>,
    /// The rewritten text when kept and a `c4` preset changed it (removed lines,
    /// citations or surrounding whitespace); `None` when the text is unchanged.
    pub text: Option<String>,
    /// Metric values aligned with [`QualityFilter::metric_names`]. Evaluation stops
    /// at the first failing rule, so metrics after it (in the preset's rule order and
    /// in later presets) are NaN; a ratio over zero items is NaN too.
    pub metrics: Vec<f64>,
}

/// Options resolved for the default and for each language of `by_lang`.
struct ByLang<P> {
    default: P,
    langs: BTreeMap<String, P>,
}

impl<P> ByLang<P> {
    #[inline]
    fn get(&self, lang: Option<&str>) -> &P {
        match lang {
            Some(l) => self.langs.get(l).unwrap_or(&self.default),
            None => &self.default,
        }
    }
}

struct Repetition {
    o: GopherRepetition,
    top_slots: Vec<usize>,
    dup_slots: Vec<usize>,
}

enum Stage {
    GopherQuality(ByLang<GqParams>),
    GopherRepetition(ByLang<Repetition>),
    C4(ByLang<C4Params>),
    FineWeb(ByLang<FwParams>),
}

struct StageAt {
    stage: Stage,
    /// Offset of the stage's metrics in `Outcome::metrics`.
    at: usize,
}

/// A chain of quality presets, built once and shared by threads (`Sync`).
pub struct QualityFilter {
    stages: Vec<StageAt>,
    rules: Vec<&'static str>,
    metrics: Vec<&'static str>,
}

fn resolve<O, X, P>(
    preset: &'static str,
    base: &O,
    by_lang: &BTreeMap<String, X>,
    apply: impl Fn(&O, &X) -> O,
    build: impl Fn(O) -> Result<P, String>,
    clone: impl Fn(&O) -> O,
) -> Result<ByLang<P>, Error> {
    let default = build(clone(base)).map_err(|message| Error::Invalid { preset, lang: String::new(), message })?;
    let mut langs = BTreeMap::new();
    for (l, x) in by_lang {
        let p = build(apply(base, x)).map_err(|message| Error::Invalid {
            preset,
            lang: format!(" (by_lang.{l})"),
            message,
        })?;
        langs.insert(l.clone(), p);
    }
    Ok(ByLang { default, langs })
}

fn check_ratio(name: &str, v: f64) -> Result<(), String> {
    if v.is_nan() {
        return Err(format!("{name} is NaN"));
    }
    Ok(())
}

impl QualityFilter {
    /// Compiles the presets. Order matters: the first failing rule wins, presets run
    /// in order, and text rewritten by `c4` is what later presets see (as when
    /// datatrove filters are chained in a pipeline).
    pub fn new(presets: Vec<Preset>) -> Result<Self, Error> {
        if presets.is_empty() {
            return Err(Error::NoPresets);
        }
        let mut stages = Vec::new();
        let mut rules: Vec<&'static str> = Vec::new();
        let mut metrics: Vec<&'static str> = Vec::new();
        let mut seen: Vec<&'static str> = Vec::new();
        for p in presets {
            let name = p.name();
            if seen.contains(&name) {
                return Err(Error::DuplicatePreset(name));
            }
            seen.push(name);
            let at = metrics.len();
            let stage = match p {
                Preset::GopherQuality(o) => {
                    rules.extend(filters::GQ_RULES);
                    metrics.extend(filters::GQ_METRICS);
                    Stage::GopherQuality(resolve(
                        name,
                        &o,
                        &o.by_lang,
                        |b, x| b.with_overrides(x),
                        |o| {
                            for (k, v) in [
                                ("min_avg_word_length", o.min_avg_word_length),
                                ("max_avg_word_length", o.max_avg_word_length),
                                ("max_symbol_word_ratio", o.max_symbol_word_ratio),
                                ("max_bullet_lines_ratio", o.max_bullet_lines_ratio),
                                ("max_ellipsis_lines_ratio", o.max_ellipsis_lines_ratio),
                                ("max_non_alpha_words_ratio", o.max_non_alpha_words_ratio),
                            ] {
                                check_ratio(k, v)?;
                            }
                            Ok(GqParams::new(o))
                        },
                        |o| GopherQuality { by_lang: BTreeMap::new(), ..o.clone() },
                    )?)
                }
                Preset::GopherRepetition(o) => {
                    // Rule and metric names: fixed ones, then one per configured n (the
                    // union over languages, in first-seen order).
                    rules.extend(filters::GR_FIXED_RULES);
                    metrics.extend(filters::GR_FIXED_METRICS);
                    let mut all_top: Vec<usize> = Vec::new();
                    let mut all_dup: Vec<usize> = Vec::new();
                    let variants: Vec<GopherRepetition> =
                        std::iter::once(o.clone()).chain(o.by_lang.values().map(|x| o.with_overrides(x))).collect();
                    for v in &variants {
                        filters::gr_validate(v).map_err(|message| Error::Invalid {
                            preset: name,
                            lang: String::new(),
                            message,
                        })?;
                        for &(n, f) in &v.top_n_grams {
                            check_ratio("top_n_grams", f).map_err(|message| Error::Invalid {
                                preset: name,
                                lang: String::new(),
                                message,
                            })?;
                            if !all_top.contains(&n) {
                                all_top.push(n);
                            }
                        }
                        for &(n, f) in &v.dup_n_grams {
                            check_ratio("dup_n_grams", f).map_err(|message| Error::Invalid {
                                preset: name,
                                lang: String::new(),
                                message,
                            })?;
                            if !all_dup.contains(&n) {
                                all_dup.push(n);
                            }
                        }
                    }
                    let top_base = metrics.len();
                    for &n in &all_top {
                        rules.push(names::TOP_RULE[n - 1]);
                        metrics.push(names::TOP_METRIC[n - 1]);
                    }
                    let dup_base = metrics.len();
                    for &n in &all_dup {
                        rules.push(names::DUP_RULE[n - 1]);
                        metrics.push(names::DUP_METRIC[n - 1]);
                    }
                    let slots = |v: &GopherRepetition| Repetition {
                        top_slots: v
                            .top_n_grams
                            .iter()
                            .map(|(n, _)| top_base - at + all_top.iter().position(|x| x == n).unwrap())
                            .collect(),
                        dup_slots: v
                            .dup_n_grams
                            .iter()
                            .map(|(n, _)| dup_base - at + all_dup.iter().position(|x| x == n).unwrap())
                            .collect(),
                        o: GopherRepetition { by_lang: BTreeMap::new(), ..v.clone() },
                    };
                    let default = slots(&variants[0]);
                    let langs =
                        o.by_lang.keys().zip(variants[1..].iter()).map(|(l, v)| (l.clone(), slots(v))).collect();
                    Stage::GopherRepetition(ByLang { default, langs })
                }
                Preset::C4(o) => {
                    rules.extend(filters::C4_RULES);
                    metrics.extend(filters::C4_METRICS);
                    Stage::C4(resolve(
                        name,
                        &o,
                        &o.by_lang,
                        |b, x| b.with_overrides(x),
                        |o| Ok(C4Params::new(o)),
                        |o| C4 { by_lang: BTreeMap::new(), ..o.clone() },
                    )?)
                }
                Preset::FineWeb(o) => {
                    rules.extend(filters::FW_RULES);
                    metrics.extend(filters::FW_METRICS);
                    Stage::FineWeb(resolve(
                        name,
                        &o,
                        &o.by_lang,
                        |b, x| b.with_overrides(x),
                        |o| {
                            if let Some(v) = &o.stop_chars {
                                if v.iter().any(|s| s.is_empty()) {
                                    return Err("stop_chars holds an empty string".into());
                                }
                            }
                            Ok(FwParams::new(o))
                        },
                        |o| FineWeb { by_lang: BTreeMap::new(), ..o.clone() },
                    )?)
                }
            };
            stages.push(StageAt { stage, at });
        }
        // compile the tokenizer now rather than on the first document
        let _ = tokenizer::english();
        Ok(QualityFilter { stages, rules, metrics })
    }

    /// Every rule that can drop a document, prefixed by its preset.
    pub fn rule_names(&self) -> Vec<&'static str> {
        self.rules.clone()
    }

    /// The names of [`Outcome::metrics`], in order.
    pub fn metric_names(&self) -> Vec<&'static str> {
        self.metrics.clone()
    }

    /// Runs the presets on one document. `lang` selects `by_lang` thresholds.
    pub fn evaluate(&self, text: &str, lang: Option<&str>) -> Outcome {
        let mut metrics = vec![f64::NAN; self.metrics.len()];
        let mut cur: Cow<'_, str> = Cow::Borrowed(text);
        let mut words = Words::new();
        for st in &self.stages {
            let m = &mut metrics[st.at..];
            let verdict = match &st.stage {
                Stage::GopherQuality(b) => {
                    let (base, w) = words.get(&cur);
                    filters::gopher_quality(b.get(lang), &cur, base, w, m)
                }
                Stage::GopherRepetition(b) => {
                    let r = b.get(lang);
                    filters::gopher_repetition(&r.o, &cur, &mut words, m, &r.top_slots, &r.dup_slots)
                }
                Stage::C4(b) => filters::c4(b.get(lang), &cur, m),
                Stage::FineWeb(b) => filters::fineweb(b.get(lang), &cur, &mut words, m),
            };
            match verdict {
                Verdict::Keep => {}
                Verdict::Rewrite(t) => {
                    cur = Cow::Owned(t);
                    words.reset();
                }
                Verdict::Drop(rule) => {
                    return Outcome { keep: false, failed_rule: Some(rule), text: None, metrics };
                }
            }
        }
        let text = match cur {
            Cow::Owned(t) if t != text => Some(t),
            _ => None,
        };
        Outcome { keep: true, failed_rule: None, text, metrics }
    }
}

#[cfg(test)]
mod tests;
