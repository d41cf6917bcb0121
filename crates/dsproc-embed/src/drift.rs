//! Two samples of embeddings compared: the new version's against the baseline's.
//!
//! Every statistic is computed in f64 with a fixed order of summation (chunks of rows
//! summed in order, whatever the thread count), so the same embeddings give the same
//! values on every run.

use rayon::prelude::*;
use serde::Serialize;

/// How [`compare`] runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seeds the classifier's train/test split.
    pub seed: u64,
    /// Histogram bins of the cosine similarities.
    pub bins: usize,
    /// At most this many embeddings per side enter MMD² (the first ones: callers
    /// pass samples in a random order).
    pub mmd_max: usize,
    /// The share of each side the classifier is trained on (the rest is held out).
    pub train_share: f64,
    /// Inverse L2 regularisation strength, as scikit-learn's `C`.
    pub c: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self { seed: 0, bins: 20, mmd_max: 2000, train_share: 0.7, c: 1.0 }
    }
}

/// Everything [`compare`] measures.
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    /// Cosine similarity of each embedding to the baseline's centroid.
    pub cosine_to_centroid: CosineDrift,
    /// Distance between the two mean embeddings.
    pub mean_distance: MeanDistance,
    /// MMD² (unbiased) with an RBF kernel.
    pub mmd: Mmd,
    /// The domain classifier (new = 1, baseline = 0).
    pub classifier: Classifier,
}

/// Cosine similarities to the baseline centroid, new against baseline.
#[derive(Debug, Clone, Serialize)]
pub struct CosineDrift {
    pub new_mean: f64,
    pub baseline_mean: f64,
    /// Two-sample Kolmogorov–Smirnov statistic (the largest gap of the ECDFs).
    pub ks_statistic: f64,
    /// Its asymptotic p-value (Kolmogorov distribution with Stephens' correction).
    pub ks_p_value: f64,
    /// `bins + 1` equal-width edges over the range of both samples.
    pub edges: Vec<f64>,
    /// Share of the new sample per bin.
    pub new: Vec<f64>,
    /// Share of the baseline sample per bin.
    pub baseline: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MeanDistance {
    /// ‖mean(new) − mean(baseline)‖₂.
    pub euclidean: f64,
    /// 1 − cos(mean(new), mean(baseline)).
    pub cosine: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Mmd {
    /// Unbiased MMD² estimate.
    pub mmd2: f64,
    /// The kernel's σ: the median pairwise Euclidean distance of the pooled sample;
    /// k(x, y) = exp(−‖x − y‖² / (2σ²)).
    pub sigma: f64,
    pub new: usize,
    pub baseline: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Classifier {
    /// ROC-AUC of the held-out rows (ties as Mann–Whitney: half a win).
    pub roc_auc: f64,
    pub train: usize,
    pub test: usize,
    /// Newton iterations to convergence.
    pub iterations: usize,
}

/// Why the samples cannot be compared.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriftError {
    #[error("embeddings of different lengths ({0} and {1})")]
    Dimension(usize, usize),
    #[error("too few embeddings to compare: {new} new, {baseline} baseline (at least {min} each)")]
    TooFew { new: usize, baseline: usize, min: usize },
}

/// The fewest embeddings per side [`compare`] accepts (the held-out split needs a
/// few of each).
pub const MIN_PER_SIDE: usize = 10;

/// Compares `new` with `baseline` (embeddings in a random order, all of one length).
pub fn compare(new: &[Vec<f32>], baseline: &[Vec<f32>], opts: &Options) -> Result<Drift, DriftError> {
    if new.len() < MIN_PER_SIDE || baseline.len() < MIN_PER_SIDE {
        return Err(DriftError::TooFew { new: new.len(), baseline: baseline.len(), min: MIN_PER_SIDE });
    }
    let dim = baseline[0].len();
    if let Some(bad) = new.iter().chain(baseline).find(|v| v.len() != dim) {
        return Err(DriftError::Dimension(dim, bad.len()));
    }
    let new64: Vec<Vec<f64>> = new.iter().map(|v| v.iter().map(|x| *x as f64).collect()).collect();
    let base64: Vec<Vec<f64>> = baseline.iter().map(|v| v.iter().map(|x| *x as f64).collect()).collect();
    let (mn, mb) = (mean(&new64), mean(&base64));

    // cosine to the baseline centroid; a baseline row against the centroid of the
    // others (leave-one-out), so it is not compared with a mean it is part of
    let nb = base64.len() as f64;
    let cos_new: Vec<f64> = new64.iter().map(|x| cosine(x, &mb)).collect();
    let cos_base: Vec<f64> = base64
        .iter()
        .map(|x| {
            let c: Vec<f64> = mb.iter().zip(x).map(|(m, v)| (m * nb - v) / (nb - 1.0)).collect();
            cosine(x, &c)
        })
        .collect();
    let (ks_statistic, ks_p_value) = ks_2samp(&cos_new, &cos_base);
    let (edges, hn, hb) = histograms(&cos_new, &cos_base, opts.bins.max(1));

    let euclidean = mn.iter().zip(&mb).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
    let mean_cos = 1.0 - cosine(&mn, &mb);

    let (xa, xb) = (&new64[..new64.len().min(opts.mmd_max)], &base64[..base64.len().min(opts.mmd_max)]);
    let (mmd2, sigma) = mmd2_rbf(xa, xb);

    let (roc_auc, train, test, iterations) = domain_classifier(&new64, &base64, opts);
    Ok(Drift {
        cosine_to_centroid: CosineDrift {
            new_mean: cos_new.iter().sum::<f64>() / cos_new.len() as f64,
            baseline_mean: cos_base.iter().sum::<f64>() / cos_base.len() as f64,
            ks_statistic,
            ks_p_value,
            edges,
            new: hn,
            baseline: hb,
        },
        mean_distance: MeanDistance { euclidean, cosine: mean_cos },
        mmd: Mmd { mmd2, sigma, new: xa.len(), baseline: xb.len() },
        classifier: Classifier { roc_auc, train, test, iterations },
    })
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn mean(x: &[Vec<f64>]) -> Vec<f64> {
    let mut m = vec![0.0; x.first().map_or(0, |v| v.len())];
    for v in x {
        for (a, b) in m.iter_mut().zip(v) {
            *a += b;
        }
    }
    let n = x.len().max(1) as f64;
    m.iter().map(|a| a / n).collect()
}

/// cos(a, b); 0 when either is the zero vector.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let d = dot(a, a).sqrt() * dot(b, b).sqrt();
    if d > 0.0 {
        dot(a, b) / d
    } else {
        0.0
    }
}

/// Two-sample Kolmogorov–Smirnov: the statistic D (as scipy's `ks_2samp`) and the
/// asymptotic two-sided p-value Q_KS((√n_e + 0.12 + 0.11/√n_e)·D), n_e = nm/(n+m).
pub fn ks_2samp(a: &[f64], b: &[f64]) -> (f64, f64) {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (n, m) = (a.len(), b.len());
    if n == 0 || m == 0 {
        return (0.0, 1.0);
    }
    let (mut i, mut j, mut d) = (0usize, 0usize, 0f64);
    while i < n && j < m {
        let x = a[i].min(b[j]);
        while i < n && a[i] <= x {
            i += 1;
        }
        while j < m && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n as f64 - j as f64 / m as f64).abs());
    }
    let en = ((n * m) as f64 / (n + m) as f64).sqrt();
    (d, kolmogorov_sf((en + 0.12 + 0.11 / en) * d))
}

/// The Kolmogorov distribution's survival function 2 Σ (−1)^(k−1) e^(−2k²λ²).
fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda < 1e-3 {
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let t = (-2.0 * (k * k) as f64 * lambda * lambda).exp();
        sum += if k % 2 == 1 { t } else { -t };
        if t < 1e-16 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// Equal-width histograms of `a` and `b` over their common range: edges, shares.
pub fn histograms(a: &[f64], b: &[f64], bins: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let lo = a.iter().chain(b).copied().fold(f64::INFINITY, f64::min);
    let hi = a.iter().chain(b).copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi > lo { (lo, hi) } else { (lo.min(0.0), lo.max(0.0) + 1.0) };
    let w = (hi - lo) / bins as f64;
    let edges: Vec<f64> = (0..=bins).map(|i| lo + w * i as f64).collect();
    let share = |v: &[f64]| {
        let mut c = vec![0.0; bins];
        for x in v {
            let k = (((x - lo) / w).floor().max(0.0) as usize).min(bins - 1);
            c[k] += 1.0;
        }
        let n = v.len().max(1) as f64;
        c.into_iter().map(|x| x / n).collect::<Vec<f64>>()
    };
    (edges, share(a), share(b))
}

/// Unbiased MMD² of `x` and `y` with k(u, v) = exp(−‖u − v‖² / (2σ²)), σ the median
/// of the pairwise Euclidean distances of `x ∪ y` (the median heuristic). Returns
/// (MMD², σ).
pub fn mmd2_rbf(x: &[Vec<f64>], y: &[Vec<f64>]) -> (f64, f64) {
    let pooled: Vec<&Vec<f64>> = x.iter().chain(y).collect();
    let n = pooled.len();
    let sq: Vec<f64> = pooled.iter().map(|v| dot(v, v)).collect();
    // squared distances of every pair i < j, row by row
    let d2: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|i| (i + 1..n).map(|j| (sq[i] + sq[j] - 2.0 * dot(pooled[i], pooled[j])).max(0.0)).collect())
        .collect();
    let mut all: Vec<f64> = d2.iter().flatten().copied().collect();
    if all.is_empty() {
        return (0.0, 0.0);
    }
    let mid = all.len() / 2;
    let (_, m, _) = all.select_nth_unstable_by(mid, f64::total_cmp);
    let mut med = *m;
    if all.len().is_multiple_of(2) {
        let below = all[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        med = (med + below) / 2.0;
    }
    let sigma = med.sqrt();
    let gamma = if med > 0.0 { 1.0 / (2.0 * med) } else { 0.0 };
    let (nx, ny) = (x.len(), y.len());
    let (mut kxx, mut kyy, mut kxy) = (0.0, 0.0, 0.0);
    for (i, row) in d2.iter().enumerate() {
        for (o, d) in row.iter().enumerate() {
            let j = i + 1 + o;
            let k = (-gamma * d).exp();
            match (i < nx, j < nx) {
                (true, true) => kxx += k,
                (false, false) => kyy += k,
                _ => kxy += k,
            }
        }
    }
    let (fx, fy) = (nx as f64, ny as f64);
    let mmd2 = 2.0 * kxx / (fx * (fx - 1.0)) + 2.0 * kyy / (fy * (fy - 1.0)) - 2.0 * kxy / (fx * fy);
    (mmd2, sigma)
}

/// splitmix64: the seeded split's order.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Indices `0..n` split into (train, test): ordered by a seeded hash, the first
/// `share` (rounded, at least one of each when n ≥ 2) for training.
pub fn split(n: usize, share: f64, seed: u64, salt: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by_key(|&i| (mix(mix(seed ^ salt.rotate_left(32)) ^ i as u64), i));
    let k = ((n as f64 * share).round() as usize).clamp(1.min(n), n.saturating_sub(1).max(1.min(n)));
    let test = idx.split_off(k);
    (idx, test)
}

/// Trains on a seeded `train_share` of each side, scores the rest: (ROC-AUC, rows
/// trained on, rows held out, iterations).
fn domain_classifier(new: &[Vec<f64>], base: &[Vec<f64>], opts: &Options) -> (f64, usize, usize, usize) {
    let (tn, sn) = split(new.len(), opts.train_share, opts.seed, 1);
    let (tb, sb) = split(base.len(), opts.train_share, opts.seed, 2);
    let x: Vec<&[f64]> = tn.iter().map(|&i| new[i].as_slice()).chain(tb.iter().map(|&i| base[i].as_slice())).collect();
    let y: Vec<f64> = tn.iter().map(|_| 1.0).chain(tb.iter().map(|_| 0.0)).collect();
    let fit = logistic_regression(&x, &y, opts.c);
    let scores: Vec<f64> =
        sn.iter().map(|&i| fit.decision(&new[i])).chain(sb.iter().map(|&i| fit.decision(&base[i]))).collect();
    let labels: Vec<bool> = sn.iter().map(|_| true).chain(sb.iter().map(|_| false)).collect();
    (roc_auc(&scores, &labels), x.len(), scores.len(), fit.iterations)
}

/// A fitted logistic regression.
#[derive(Debug, Clone)]
pub struct Logistic {
    pub weights: Vec<f64>,
    pub intercept: f64,
    pub iterations: usize,
}

impl Logistic {
    /// w·x + b.
    pub fn decision(&self, x: &[f64]) -> f64 {
        dot(&self.weights, x) + self.intercept
    }
}

const CHUNK: usize = 256;

/// L2-regularised logistic regression as scikit-learn's `LogisticRegression(C=c)`:
/// minimises ½‖w‖² + c Σ log-loss (the intercept not penalised), by Newton's method
/// with a backtracking line search, from zero, until the gradient's largest entry is
/// below 1e-9 · (1 + c·n) or 100 iterations.
pub fn logistic_regression(x: &[&[f64]], y: &[f64], c: f64) -> Logistic {
    let d = x.first().map_or(0, |r| r.len());
    let p = d + 1; // the intercept last
    let mut w = vec![0.0; p];
    let z = |w: &[f64], r: &[f64]| dot(&w[..d], r) + w[d];
    // log(1 + e^t) without overflow
    let softplus = |t: f64| if t > 0.0 { t + (-t).exp().ln_1p() } else { t.exp().ln_1p() };
    let objective = |w: &[f64]| {
        let loss: f64 = x
            .par_chunks(CHUNK)
            .zip(y.par_chunks(CHUNK))
            .map(|(xs, ys)| xs.iter().zip(ys).map(|(r, t)| softplus(z(w, r)) - t * z(w, r)).sum::<f64>())
            .collect::<Vec<f64>>()
            .iter()
            .sum();
        0.5 * dot(&w[..d], &w[..d]) + c * loss
    };
    let tol = 1e-9 * (1.0 + c * x.len() as f64);
    let mut f = objective(&w);
    let mut iterations = 0;
    for it in 1..=100 {
        iterations = it;
        // gradient and the Hessian's upper triangle, chunk by chunk, summed in order
        let parts: Vec<(Vec<f64>, Vec<f64>)> = x
            .par_chunks(CHUNK)
            .zip(y.par_chunks(CHUNK))
            .map(|(xs, ys)| {
                let mut g = vec![0.0; p];
                let mut h = vec![0.0; p * p];
                for (r, t) in xs.iter().zip(ys) {
                    let s = 1.0 / (1.0 + (-z(&w, r)).exp());
                    let (e, v) = (s - t, s * (1.0 - s));
                    for a in 0..d {
                        g[a] += e * r[a];
                        let va = v * r[a];
                        let row = &mut h[a * p..a * p + p];
                        for (hb, rb) in row[a..d].iter_mut().zip(&r[a..d]) {
                            *hb += va * rb;
                        }
                        row[d] += va;
                    }
                    g[d] += e;
                    h[d * p + d] += v;
                }
                (g, h)
            })
            .collect();
        let mut g = vec![0.0; p];
        let mut h = vec![0.0; p * p];
        for (pg, ph) in &parts {
            for (a, b) in g.iter_mut().zip(pg) {
                *a += b;
            }
            for (a, b) in h.iter_mut().zip(ph) {
                *a += b;
            }
        }
        for a in 0..p {
            g[a] *= c;
            for b in a..p {
                h[a * p + b] *= c;
                h[b * p + a] = h[a * p + b];
            }
        }
        for a in 0..d {
            g[a] += w[a];
            h[a * p + a] += 1.0;
        }
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) < tol {
            break;
        }
        let Some(step) = cholesky_solve(&h, &g, p) else { break };
        let mut t = 1.0;
        let mut improved = false;
        for _ in 0..30 {
            let cand: Vec<f64> = w.iter().zip(&step).map(|(a, s)| a - t * s).collect();
            let fc = objective(&cand);
            if fc <= f - 1e-4 * t * dot(&g, &step) {
                w = cand;
                f = fc;
                improved = true;
                break;
            }
            t *= 0.5;
        }
        if !improved {
            break;
        }
    }
    Logistic { weights: w[..d].to_vec(), intercept: w[d], iterations }
}

/// Solves H s = g for a symmetric positive definite H (p × p, row-major).
fn cholesky_solve(h: &[f64], g: &[f64], p: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; p * p];
    for i in 0..p {
        for j in 0..=i {
            let s = h[i * p + j] - dot(&l[i * p..i * p + j], &l[j * p..j * p + j]);
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * p + i] = s.sqrt();
            } else {
                l[i * p + j] = s / l[j * p + j];
            }
        }
    }
    let mut z = vec![0.0; p];
    for i in 0..p {
        z[i] = (g[i] - dot(&l[i * p..i * p + i], &z[..i])) / l[i * p + i];
    }
    let mut s = vec![0.0; p];
    for i in (0..p).rev() {
        let mut v = z[i];
        for k in i + 1..p {
            v -= l[k * p + i] * s[k];
        }
        s[i] = v / l[i * p + i];
    }
    Some(s)
}

/// ROC-AUC of `scores` for the `true` labels: the Mann–Whitney U over average
/// ranks (a tie counts half), as scikit-learn's `roc_auc_score`. 0.5 when one class
/// is missing.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let pos = labels.iter().filter(|l| **l).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return 0.5;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg * idx[i..=j].iter().filter(|&&k| labels[k]).count() as f64;
        i = j + 1;
    }
    (rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos * neg) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauss(seed: u64, n: usize, d: usize, shift: f64) -> Vec<Vec<f32>> {
        // Box–Muller over splitmix64
        let mut s = seed;
        let mut u = move || {
            s = mix(s);
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                (0..d)
                    .map(|k| {
                        let g = (-2.0 * u().ln()).sqrt() * (2.0 * std::f64::consts::PI * u()).cos();
                        (g + if k == 0 { shift } else { 0.0 }) as f32
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn auc_counts_ties_as_half() {
        assert_eq!(roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]), 0.75);
        assert_eq!(roc_auc(&[1.0, 1.0], &[true, false]), 0.5);
        assert_eq!(roc_auc(&[0.0, 1.0], &[false, true]), 1.0);
    }

    #[test]
    fn ks_statistic_and_p_value() {
        let a: Vec<f64> = (0..100).map(|i| i as f64).collect();
        let b: Vec<f64> = (0..100).map(|i| i as f64 + 0.5).collect();
        let (d, p) = ks_2samp(&a, &b);
        assert!((d - 0.01).abs() < 1e-12 && p > 0.99, "{d} {p}");
        let c: Vec<f64> = (0..100).map(|i| i as f64 + 50.0).collect();
        let (d, p) = ks_2samp(&a, &c);
        assert!((d - 0.5).abs() < 1e-12 && p < 1e-9, "{d} {p}");
    }

    #[test]
    fn same_distribution_passes_a_shift_is_seen() {
        let a = gauss(1, 300, 8, 0.0);
        let b = gauss(2, 300, 8, 0.0);
        let c = gauss(3, 300, 8, 1.5);
        let o = Options::default();
        let same = compare(&a, &b, &o).unwrap();
        let moved = compare(&c, &b, &o).unwrap();
        assert!(same.classifier.roc_auc < 0.6 && moved.classifier.roc_auc > 0.8, "{same:?} {moved:?}");
        // N(0, I) against N(δe₁, I) in d dimensions, RBF kernel of bandwidth σ:
        // MMD² = 2 (σ²/(σ²+2))^(d/2) (1 − exp(−δ²/(2(σ²+2))))
        let s2 = moved.mmd.sigma * moved.mmd.sigma;
        let expected = 2.0 * (s2 / (s2 + 2.0)).powf(4.0) * (1.0 - (-2.25 / (2.0 * (s2 + 2.0))).exp());
        assert!(same.mmd.mmd2.abs() < 0.01, "{same:?}");
        assert!((moved.mmd.mmd2 - expected).abs() < 0.25 * expected, "{} vs {expected}: {moved:?}", moved.mmd.mmd2);
        assert!(same.mean_distance.euclidean < 0.5 && (moved.mean_distance.euclidean - 1.5).abs() < 0.3);
        assert_eq!(compare(&a, &b, &o).unwrap().classifier.roc_auc, same.classifier.roc_auc);
        let sum: f64 = same.cosine_to_centroid.new.iter().sum();
        assert!((sum - 1.0).abs() < 1e-12);
        assert_eq!(compare(&a[..3], &b, &o).unwrap_err(), DriftError::TooFew { new: 3, baseline: 300, min: 10 });
    }

    #[test]
    fn split_is_seeded_and_complete() {
        let (tr, te) = split(10, 0.7, 5, 1);
        assert_eq!((tr.len(), te.len()), (7, 3));
        let mut all: Vec<usize> = tr.iter().chain(&te).copied().collect();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(split(10, 0.7, 5, 1), (tr.clone(), te));
        assert_ne!(split(10, 0.7, 6, 1).0, tr);
    }
}
