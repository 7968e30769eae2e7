//! Softmax cross-entropy over the vocabulary, with ignored labels.
//!
//! Shapes: N = rows (labelled positions or B*T), V = vocabulary. logits/dlogits [N,V], targets [N],
//! losses [N]. Rows whose target is [`IGNORE_INDEX`] get loss 0 and a zero gradient row.

/// Label value meaning "no loss at this position" (PyTorch's `ignore_index` default).
pub const IGNORE_INDEX: i32 = -100;

/// Totals over the non-ignored rows of one call.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CeStats {
    /// Sum of the per-row losses (nats), accumulated in f64.
    pub loss_sum: f64,
    /// Number of non-ignored rows.
    pub count: usize,
    /// Number of non-ignored rows whose argmax equals the target (first maximum wins ties).
    pub correct: usize,
}

impl CeStats {
    /// Adds another call's totals into these.
    pub fn merge(&mut self, other: CeStats) {
        self.loss_sum += other.loss_sum;
        self.count += other.count;
        self.correct += other.correct;
    }
}

/// Returns the target as a column index, or None for an ignored row. Panics on any other negative
/// value or a target ≥ V (a programmer error: the data pipeline validates labels).
#[inline]
pub(crate) fn target_index(t: i32, v: usize) -> Option<usize> {
    if t == IGNORE_INDEX {
        return None;
    }
    assert!(t >= 0 && (t as usize) < v, "cross-entropy target {t} outside [0, {v})");
    Some(t as usize)
}

/// losses[N] = -log softmax(logits[i])[targets[i]], 0 where targets[i] == IGNORE_INDEX.
pub fn cross_entropy_forward(losses: &mut [f32], logits: &[f32], targets: &[i32], n: usize, v: usize) -> CeStats {
    cross_entropy_forward_reference(losses, logits, targets, n, v)
}

/// dlogits[N,V] = scale·(softmax(logits) − onehot(target)); 0 rows where ignored. Overwrites dlogits.
pub fn cross_entropy_backward(dlogits: &mut [f32], logits: &[f32], targets: &[i32], scale: f32, n: usize, v: usize) {
    cross_entropy_backward_reference(dlogits, logits, targets, scale, n, v);
}

/// Fused and in place: logits[N,V] in, dlogits out (same buffer), losses[N] out. Saves an N×V buffer.
pub fn cross_entropy_fused(logits_to_dlogits: &mut [f32], losses: &mut [f32], targets: &[i32], scale: f32, n: usize, v: usize) -> CeStats {
    cross_entropy_fused_reference(logits_to_dlogits, losses, targets, scale, n, v)
}

/// Reference twin of [`cross_entropy_forward`]: plain loops, f64 log-sum-exp.
pub fn cross_entropy_forward_reference(losses: &mut [f32], logits: &[f32], targets: &[i32], n: usize, v: usize) -> CeStats {
    assert!(losses.len() >= n && logits.len() >= n * v && targets.len() >= n);
    let mut stats = CeStats::default();
    for i in 0..n {
        let row = &logits[i * v..(i + 1) * v];
        let Some(t) = target_index(targets[i], v) else {
            losses[i] = 0.0;
            continue;
        };
        let mut max = f32::NEG_INFINITY;
        let mut argmax = 0;
        for (j, &x) in row.iter().enumerate() {
            if x > max {
                max = x;
                argmax = j;
            }
        }
        let sum: f64 = row.iter().map(|&x| (x as f64 - max as f64).exp()).sum();
        let loss = sum.ln() + max as f64 - row[t] as f64;
        losses[i] = loss as f32;
        stats.loss_sum += loss;
        stats.count += 1;
        stats.correct += (argmax == t) as usize;
    }
    stats
}

/// Reference twin of [`cross_entropy_backward`]: plain loops, f64 sums.
pub fn cross_entropy_backward_reference(dlogits: &mut [f32], logits: &[f32], targets: &[i32], scale: f32, n: usize, v: usize) {
    assert!(dlogits.len() >= n * v && logits.len() >= n * v && targets.len() >= n);
    for i in 0..n {
        let row = &logits[i * v..(i + 1) * v];
        let drow = &mut dlogits[i * v..(i + 1) * v];
        let Some(t) = target_index(targets[i], v) else {
            drow.fill(0.0);
            continue;
        };
        let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
        for j in 0..v {
            let p = (row[j] as f64 - max).exp() / sum;
            let y = if j == t { 1.0 } else { 0.0 };
            drow[j] = (scale as f64 * (p - y)) as f32;
        }
    }
}

/// Reference twin of [`cross_entropy_fused`]: the unfused forward then backward through a copy.
/// It allocates a row buffer; it exists for tests only.
pub fn cross_entropy_fused_reference(logits_to_dlogits: &mut [f32], losses: &mut [f32], targets: &[i32], scale: f32, n: usize, v: usize) -> CeStats {
    assert!(logits_to_dlogits.len() >= n * v && losses.len() >= n && targets.len() >= n);
    let mut stats = CeStats::default();
    let mut row_copy = vec![0.0f32; v];
    for i in 0..n {
        row_copy.copy_from_slice(&logits_to_dlogits[i * v..(i + 1) * v]);
        let s = cross_entropy_forward_reference(&mut losses[i..i + 1], &row_copy, &targets[i..i + 1], 1, v);
        stats.merge(s);
        cross_entropy_backward_reference(&mut logits_to_dlogits[i * v..(i + 1) * v], &row_copy, &targets[i..i + 1], scale, 1, v);
    }
    stats
}
