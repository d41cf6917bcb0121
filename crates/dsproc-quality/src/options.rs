//! Options of the four presets. Keys, meanings and defaults are those of datatrove
//! 0.10.1's filter arguments. Where datatrove takes `None` (or any falsy value) to
//! switch a check off, `0` switches it off here.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

macro_rules! preset_options {
    (
        $(#[$smeta:meta])*
        $name:ident / $over:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $default:expr ; )*
        }
    ) => {
        $(#[$smeta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            /// Per-language thresholds: language code (as `lang` gives it, e.g. from a
            /// langid step) -> any of the keys above. Keys not given keep the values
            /// above; languages not listed use the values above. Every language is
            /// tokenized with the English rules (see the crate docs).
            pub by_lang: BTreeMap<String, $over>,
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* by_lang: BTreeMap::new() }
            }
        }

        #[doc = concat!("Per-language overrides of [`", stringify!($name), "`]: every key is optional.")]
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $over {
            $(
                $(#[$fmeta])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }

        impl $name {
            /// These options with `o`'s keys applied (and no `by_lang`).
            pub fn with_overrides(&self, o: &$over) -> Self {
                Self {
                    $( $field: o.$field.clone().unwrap_or_else(|| self.$field.clone()), )*
                    by_lang: BTreeMap::new(),
                }
            }
        }
    };
}

/// datatrove's `STOP_WORDS` (gopher_quality_filter.py).
pub const STOP_WORDS: [&str; 8] = ["the", "be", "to", "of", "and", "that", "have", "with"];

fn default_stop_words() -> Vec<String> {
    STOP_WORDS.iter().map(|s| s.to_string()).collect()
}

preset_options! {
    /// `gopher_quality`: datatrove's `GopherQualityFilter` (Gopher, Rae et al. 2021,
    /// table A1). Words are spaCy English tokens; "non-symbol words" are words with a
    /// character outside datatrove's `PUNCTUATION_SET`.
    GopherQuality / GopherQualityOverrides {
        /// Drop a document with fewer non-symbol words (`gopher_short_doc`); 0 disables.
        min_doc_words: u64 = 50;
        /// Drop a document with more non-symbol words (`gopher_long_doc`); 0 disables.
        max_doc_words: u64 = 100_000;
        /// Drop when the mean length (code points) of non-symbol words is below
        /// (`gopher_below_avg_threshold`); 0 disables.
        min_avg_word_length: f64 = 3.0;
        /// Drop when the mean non-symbol word length is above
        /// (`gopher_above_avg_threshold`); 0 disables.
        max_avg_word_length: f64 = 10.0;
        /// Drop when `#` count / words, or (`...` + `…`) count / words, is above
        /// (`gopher_too_many_hashes`, `gopher_too_many_ellipsis`); 0 disables.
        max_symbol_word_ratio: f64 = 0.1;
        /// Drop when the share of lines starting (after leading space) with `•` or `-`
        /// is above (`gopher_too_many_bullets`); 0 disables.
        max_bullet_lines_ratio: f64 = 0.9;
        /// Drop when the share of lines ending (before trailing space) with `...` or
        /// `…` is above (`gopher_too_many_end_ellipsis`); 0 disables.
        max_ellipsis_lines_ratio: f64 = 0.3;
        /// Drop when the share of words with an alphabetic character is *below* this
        /// (`gopher_below_alpha_threshold`; datatrove's name kept); 0 disables.
        max_non_alpha_words_ratio: f64 = 0.8;
        /// Drop when fewer distinct `stop_words` occur as words, case-sensitively
        /// (`gopher_enough_stop_words`); 0 disables.
        min_stop_words: u64 = 2;
        /// The stop words counted by `min_stop_words`.
        stop_words: Vec<String> = default_stop_words();
    }
}

fn default_top_n_grams() -> Vec<(usize, f64)> {
    vec![(2, 0.2), (3, 0.18), (4, 0.16)]
}

fn default_dup_n_grams() -> Vec<(usize, f64)> {
    vec![(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)]
}

preset_options! {
    /// `gopher_repetition`: datatrove's `GopherRepetitionFilter` (Gopher table A1).
    /// Fractions are of the document's length in code points; paragraphs are split at
    /// 2+ newlines, lines at 1+ newlines; n-grams are over spaCy English words.
    GopherRepetition / GopherRepetitionOverrides {
        /// Drop when the share of lines that repeat an earlier line is above
        /// (`gopher_repetition_dup_line_frac`); 0 disables.
        dup_line_frac: f64 = 0.3;
        /// Drop when the share of paragraphs that repeat an earlier paragraph is above
        /// (`gopher_repetition_dup_para_frac`); 0 disables.
        dup_para_frac: f64 = 0.3;
        /// Drop when the characters in repeated lines / document characters is above
        /// (`gopher_repetition_dup_line_char_frac`); 0 disables.
        dup_line_char_frac: f64 = 0.2;
        /// Drop when the characters in repeated paragraphs / document characters is
        /// above (`gopher_repetition_dup_para_char_frac`); 0 disables.
        dup_para_char_frac: f64 = 0.2;
        /// `[n, max_frac]` pairs: drop when the most frequent word n-gram (joined with
        /// spaces) times its count, in characters / document characters, is above
        /// `max_frac` (`gopher_repetition_top_{n}_gram`). n in 1..=16.
        top_n_grams: Vec<(usize, f64)> = default_top_n_grams();
        /// `[n, max_frac]` pairs: drop when the characters of repeated word n-grams
        /// (non-overlapping, words joined without separator) / document characters is
        /// above `max_frac` (`gopher_repetition_duplicated_{n}_n_grams`). n in 1..=16.
        dup_n_grams: Vec<(usize, f64)> = default_dup_n_grams();
    }
}

preset_options! {
    /// `c4`: datatrove's `C4QualityFilter` (Raffel et al. 2020). Removes lines (the
    /// document's text becomes its kept lines joined with `\n`) and drops documents.
    C4 / C4Overrides {
        /// Work on lines (`str.splitlines`, kept lines joined with `\n`); `false` works
        /// on spaCy sentences instead (joined with a space).
        split_paragraph: bool = true;
        /// Remove Wikipedia-style citations (`[1]`, `[edit]`, `[citation needed]`).
        remove_citations: bool = true;
        /// Remove lines not ending in `.`, `?`, `!`, `"` or `'`, or ending in `...`.
        filter_no_terminal_punct: bool = true;
        /// Drop a document whose kept lines hold fewer spaCy sentences
        /// (`c4_too_few_sentences`); -1 disables.
        min_num_sentences: i64 = 5;
        /// Remove lines with fewer whitespace-separated words.
        min_words_per_line: i64 = 3;
        /// Remove lines with a word longer than this (code points); -1 disables.
        max_word_length: i64 = 1000;
        /// Drop a document with a kept line containing "lorem ipsum", any case
        /// (`c4_lorem_ipsum`).
        filter_lorem_ipsum: bool = true;
        /// Remove lines containing "javascript", any case.
        filter_javascript: bool = true;
        /// Drop a document with a kept line containing `{` (`c4_curly_bracket`).
        filter_curly_bracket: bool = true;
        /// Remove lines containing "terms of use", "privacy policy", "cookie policy",
        /// "uses cookies", "use of cookies" or "use cookies", any case.
        filter_policy: bool = true;
    }
}

preset_options! {
    /// `fineweb`: datatrove's `FineWebQualityFilter` (FineWeb, Penedo et al. 2024).
    /// Lines are the text split at `\n`, without lines that are only whitespace.
    FineWeb / FineWebOverrides {
        /// Drop when the share of lines ending with a `stop_chars` string is below
        /// (`fineweb_line_punct_ratio`).
        line_punct_thr: f64 = 0.12;
        /// Do not apply `line_punct_thr` to documents where no line ends with one.
        line_punct_exclude_zero: bool = false;
        /// The line endings `line_punct_thr` counts; by default datatrove's
        /// `TERMINAL_PUNCTUATION` (160 sentence-final marks of many scripts).
        stop_chars: Option<Vec<String>> = None;
        /// Drop when the share of lines of at most `short_line_length` code points is
        /// above (`fineweb_short_line_ratio`).
        short_line_thr: f64 = 0.67;
        /// The length (code points) up to which a line is short.
        short_line_length: u64 = 30;
        /// Drop when the characters of lines repeating an earlier line / characters of
        /// the text without newlines is above (`fineweb_char_dup_ratio`).
        char_duplicates_ratio: f64 = 0.01;
        /// Drop when newlines / spaCy words is above (`fineweb_list_ratio`).
        new_line_ratio: f64 = 0.3;
    }
}

/// One step of a quality filter: a preset and its options. Serialized with a
/// `preset` key naming it, next to the preset's own keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "preset")]
pub enum Preset {
    /// datatrove `GopherQualityFilter`.
    #[serde(rename = "gopher_quality")]
    GopherQuality(GopherQuality),
    /// datatrove `GopherRepetitionFilter`.
    #[serde(rename = "gopher_repetition")]
    GopherRepetition(GopherRepetition),
    /// datatrove `C4QualityFilter` (rewrites the text with the kept lines).
    #[serde(rename = "c4")]
    C4(C4),
    /// datatrove `FineWebQualityFilter`.
    #[serde(rename = "fineweb")]
    FineWeb(FineWeb),
}

impl Preset {
    /// The preset's name (`gopher_quality`, `gopher_repetition`, `c4`, `fineweb`).
    pub fn name(&self) -> &'static str {
        match self {
            Preset::GopherQuality(_) => "gopher_quality",
            Preset::GopherRepetition(_) => "gopher_repetition",
            Preset::C4(_) => "c4",
            Preset::FineWeb(_) => "fineweb",
        }
    }

    /// A preset with datatrove's defaults, by name.
    pub fn default_for(name: &str) -> Option<Preset> {
        Some(match name {
            "gopher_quality" => Preset::GopherQuality(GopherQuality::default()),
            "gopher_repetition" => Preset::GopherRepetition(GopherRepetition::default()),
            "c4" => Preset::C4(C4::default()),
            "fineweb" => Preset::FineWeb(FineWeb::default()),
            _ => return None,
        })
    }
}
