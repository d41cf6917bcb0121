//! Inter-annotator agreement for `label_agreement` checks: Cohen's κ
//! (unweighted, linear, quadratic; as scikit-learn's `cohen_kappa_score`),
//! Fleiss' κ (as statsmodels' `fleiss_kappa`, over the items every annotator
//! labelled) and Krippendorff's α (nominal, ordinal, interval; as the
//! `krippendorff` package, missing labels allowed).

use std::collections::{BTreeMap, BTreeSet};

/// One label: its text and, when it parses, its number.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub text: String,
    pub number: Option<f64>,
}

/// The distinct labels in order: numerically when every label is a number,
/// else as strings (scikit-learn sorts the label set).
pub fn label_order(labels: &[&Label]) -> Vec<String> {
    let mut distinct: Vec<&Label> = Vec::new();
    for l in labels {
        if !distinct.iter().any(|d| d.text == l.text) {
            distinct.push(l);
        }
    }
    if distinct.iter().all(|l| l.number.is_some()) {
        distinct.sort_by(|a, b| a.number.unwrap_or(0.0).total_cmp(&b.number.unwrap_or(0.0)));
    } else {
        distinct.sort_by(|a, b| a.text.cmp(&b.text));
    }
    distinct.into_iter().map(|l| l.text.clone()).collect()
}

/// `cohen_kappa_score(a, b, weights=…)` over paired labels.
pub fn cohen_kappa(pairs: &[(&Label, &Label)], weights: &str) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    let all: Vec<&Label> = pairs.iter().flat_map(|(a, b)| [*a, *b]).collect();
    let order = label_order(&all);
    let idx = |l: &Label| order.iter().position(|o| *o == l.text).unwrap_or(0);
    let k = order.len();
    let mut m = vec![vec![0f64; k]; k];
    for (a, b) in pairs {
        m[idx(a)][idx(b)] += 1.0;
    }
    let rows: Vec<f64> = m.iter().map(|r| r.iter().sum()).collect();
    let cols: Vec<f64> = (0..k).map(|j| m.iter().map(|r| r[j]).sum()).collect();
    let n: f64 = rows.iter().sum();
    let w = |i: usize, j: usize| -> f64 {
        let d = (i as f64 - j as f64).abs();
        match weights {
            "linear" => d,
            "quadratic" => d * d,
            _ => f64::from(u8::from(i != j)),
        }
    };
    let (mut obs, mut exp) = (0.0, 0.0);
    for i in 0..k {
        for j in 0..k {
            obs += w(i, j) * m[i][j];
            exp += w(i, j) * rows[i] * cols[j] / n;
        }
    }
    (exp > 0.0).then(|| 1.0 - obs / exp)
}

/// statsmodels' `fleiss_kappa(table, method="fleiss")` over the items labelled by
/// the most annotators any item has (statsmodels needs the same count on every
/// item). Returns κ and the number of items used.
pub fn fleiss_kappa(items: &BTreeMap<String, Vec<&Label>>) -> Option<(f64, usize)> {
    let n_rat = items.values().map(Vec::len).max()?;
    if n_rat < 2 {
        return None;
    }
    let full: Vec<&Vec<&Label>> = items.values().filter(|v| v.len() == n_rat).collect();
    let all: Vec<&Label> = full.iter().flat_map(|v| v.iter().copied()).collect();
    let order = label_order(&all);
    let k = order.len();
    let table: Vec<Vec<f64>> = full
        .iter()
        .map(|v| {
            let mut row = vec![0f64; k];
            for l in v.iter() {
                row[order.iter().position(|o| *o == l.text).unwrap_or(0)] += 1.0;
            }
            row
        })
        .collect();
    let n_sub = table.len() as f64;
    let n_total = n_sub * n_rat as f64;
    let p_cat: Vec<f64> = (0..k).map(|j| table.iter().map(|r| r[j]).sum::<f64>() / n_total).collect();
    let r = n_rat as f64;
    let p_mean =
        table.iter().map(|row| (row.iter().map(|x| x * x).sum::<f64>() - r) / (r * (r - 1.0))).sum::<f64>() / n_sub;
    let p_exp: f64 = p_cat.iter().map(|p| p * p).sum();
    (p_exp < 1.0).then(|| ((p_mean - p_exp) / (1.0 - p_exp), table.len()))
}

/// Krippendorff's α with `level` = `nominal`, `ordinal` or `interval`, from each
/// item's labels (missing labels simply absent). Interval and ordinal need numbers.
pub fn krippendorff_alpha(items: &BTreeMap<String, Vec<&Label>>, level: &str) -> Option<f64> {
    let units: Vec<&Vec<&Label>> = items.values().filter(|v| v.len() >= 2).collect();
    let all: Vec<&Label> = units.iter().flat_map(|v| v.iter().copied()).collect();
    let order = label_order(&all);
    let k = order.len();
    if k == 0 {
        return None;
    }
    let idx = |l: &Label| order.iter().position(|o| *o == l.text).unwrap_or(0);
    // coincidence matrix
    let mut o = vec![vec![0f64; k]; k];
    for u in &units {
        let m = u.len() as f64;
        for (i, a) in u.iter().enumerate() {
            for (j, b) in u.iter().enumerate() {
                if i != j {
                    o[idx(a)][idx(b)] += 1.0 / (m - 1.0);
                }
            }
        }
    }
    let n_c: Vec<f64> = o.iter().map(|r| r.iter().sum()).collect();
    let n: f64 = n_c.iter().sum();
    let values: Vec<f64> =
        order.iter().map(|t| all.iter().find(|l| l.text == *t).and_then(|l| l.number).unwrap_or(f64::NAN)).collect();
    let delta = |c: usize, d: usize| -> f64 {
        match level {
            "interval" => (values[c] - values[d]).powi(2),
            "ordinal" => {
                let (lo, hi) = (c.min(d), c.max(d));
                let s: f64 = n_c[lo..=hi].iter().sum();
                (s - (n_c[lo] + n_c[hi]) / 2.0).powi(2)
            }
            _ => f64::from(u8::from(c != d)),
        }
    };
    let (mut d_o, mut d_e) = (0.0, 0.0);
    for c in 0..k {
        for d in 0..k {
            let dl = delta(c, d);
            d_o += o[c][d] * dl;
            d_e += n_c[c] * n_c[d] * dl;
        }
    }
    (d_e > 0.0).then(|| 1.0 - (n - 1.0) * d_o / d_e)
}

/// Every annotator pair's Cohen's κ (items both labelled), by "a|b".
pub fn pairwise_kappa(
    by_item: &BTreeMap<String, BTreeMap<String, Label>>,
    weights: &str,
) -> BTreeMap<String, (f64, usize)> {
    let annotators: BTreeSet<&String> = by_item.values().flat_map(|m| m.keys()).collect();
    let annotators: Vec<&String> = annotators.into_iter().collect();
    let mut out = BTreeMap::new();
    for (i, a) in annotators.iter().enumerate() {
        for b in &annotators[i + 1..] {
            let pairs: Vec<(&Label, &Label)> =
                by_item.values().filter_map(|m| Some((m.get(*a)?, m.get(*b)?))).collect();
            if let Some(k) = cohen_kappa(&pairs, weights) {
                out.insert(format!("{a}|{b}"), (k, pairs.len()));
            }
        }
    }
    out
}
