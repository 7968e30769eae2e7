//! Embedding lookup (token, position, token-type tables) and its scatter-add backward.
//!
//! Shapes: ids [N], table [rows, C], out/dout [N, C].
//!
//! The fast forward copies rows in parallel. The fast backward splits the *table* into row ranges,
//! one per task; every task scans all ids and adds the rows that fall in its range, so repeated ids
//! never race and the order of additions (increasing i) is the same for every thread count.

use crate::simd::rows_per_task;
use rayon::prelude::*;

/// Row `id` of a `[rows, c]` table, with a message naming the bad id.
#[inline]
fn table_row(table: &[f32], id: u32, c: usize) -> &[f32] {
    let id = id as usize;
    assert!(
        (id + 1) * c <= table.len(),
        "embedding id {id} outside the table's {} rows",
        table.len() / c.max(1)
    );
    &table[id * c..(id + 1) * c]
}

/// out[N,C] = table[ids[i]]. Overwrites out.
pub fn embedding_forward(out: &mut [f32], ids: &[u32], table: &[f32], c: usize) {
    assert!(out.len() >= ids.len() * c);
    if c == 0 {
        return;
    }
    let rows = rows_per_task(c);
    out[..ids.len() * c]
        .par_chunks_mut(rows * c)
        .zip(ids.par_chunks(rows))
        .for_each(|(o, ids)| {
            for (row, &id) in o.chunks_exact_mut(c).zip(ids) {
                row.copy_from_slice(table_row(table, id, c));
            }
        });
}

/// out[N,C] += table[ids[i]].
pub fn embedding_accumulate(out: &mut [f32], ids: &[u32], table: &[f32], c: usize) {
    assert!(out.len() >= ids.len() * c);
    if c == 0 {
        return;
    }
    let rows = rows_per_task(c);
    out[..ids.len() * c]
        .par_chunks_mut(rows * c)
        .zip(ids.par_chunks(rows))
        .for_each(|(o, ids)| {
            for (row, &id) in o.chunks_exact_mut(c).zip(ids) {
                for (a, &t) in row.iter_mut().zip(table_row(table, id, c)) {
                    *a += t;
                }
            }
        });
}

/// dtable[ids[i]] += dout[i] for every row i.
pub fn embedding_backward(dtable: &mut [f32], dout: &[f32], ids: &[u32], c: usize) {
    assert!(dout.len() >= ids.len() * c);
    if c == 0 || ids.is_empty() {
        return;
    }
    let table_rows = dtable.len() / c;
    if let Some(&bad) = ids.iter().find(|&&id| id as usize >= table_rows) {
        panic!("embedding id {bad} outside the table's {table_rows} rows");
    }
    let tasks = if ids.len() * c < (1 << 15) {
        1
    } else {
        4 * rayon::current_num_threads()
    };
    let range = table_rows.div_ceil(tasks).max(1);
    dtable[..table_rows * c]
        .par_chunks_mut(range * c)
        .enumerate()
        .for_each(|(k, dt)| {
            let (lo, hi) = (k * range, k * range + dt.len() / c);
            for (&id, g) in ids.iter().zip(dout.chunks_exact(c)) {
                let id = id as usize;
                if (lo..hi).contains(&id) {
                    let row = &mut dt[(id - lo) * c..(id - lo + 1) * c];
                    for (d, &gv) in row.iter_mut().zip(g) {
                        *d += gv;
                    }
                }
            }
        });
}

/// Reference twin of [`embedding_forward`].
pub fn embedding_forward_reference(out: &mut [f32], ids: &[u32], table: &[f32], c: usize) {
    assert!(out.len() >= ids.len() * c);
    for (i, &id) in ids.iter().enumerate() {
        let id = id as usize;
        assert!(
            (id + 1) * c <= table.len(),
            "embedding id {id} out of range"
        );
        for k in 0..c {
            out[i * c + k] = table[id * c + k];
        }
    }
}

/// Reference twin of [`embedding_accumulate`].
pub fn embedding_accumulate_reference(out: &mut [f32], ids: &[u32], table: &[f32], c: usize) {
    assert!(out.len() >= ids.len() * c);
    for (i, &id) in ids.iter().enumerate() {
        let id = id as usize;
        assert!(
            (id + 1) * c <= table.len(),
            "embedding id {id} out of range"
        );
        for k in 0..c {
            out[i * c + k] += table[id * c + k];
        }
    }
}

/// Reference twin of [`embedding_backward`].
pub fn embedding_backward_reference(dtable: &mut [f32], dout: &[f32], ids: &[u32], c: usize) {
    assert!(dout.len() >= ids.len() * c);
    for (i, &id) in ids.iter().enumerate() {
        let id = id as usize;
        assert!(
            (id + 1) * c <= dtable.len(),
            "embedding id {id} out of range"
        );
        for k in 0..c {
            dtable[id * c + k] += dout[i * c + k];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_grad, rand_vec, weighted_sum};

    #[test]
    fn reference_gradient_matches_finite_differences() {
        let (rows, c) = (5, 3);
        let table = rand_vec(rows * c, 1, 1.0);
        let ids = [4u32, 0, 4, 2, 4];
        let w = rand_vec(ids.len() * c, 2, 1.0);
        let mut dtable = vec![0.0; rows * c];
        embedding_backward_reference(&mut dtable, &w, &ids, c);
        // Row 1 and 3 are never looked up; row 4 three times.
        assert!(dtable[c..2 * c].iter().all(|&x| x == 0.0));
        check_grad("embedding", &table, &dtable, 1e-2, 1e-5, 1e-4, |t| {
            let mut out = vec![0.0; ids.len() * c];
            embedding_forward_reference(&mut out, &ids, t, c);
            weighted_sum(&w, &out)
        });
        // accumulate == forward + previous contents.
        let base = rand_vec(ids.len() * c, 3, 1.0);
        let mut acc = base.clone();
        embedding_accumulate_reference(&mut acc, &ids, &table, c);
        let mut fwd = vec![0.0; ids.len() * c];
        embedding_forward_reference(&mut fwd, &ids, &table, c);
        let sum: Vec<f32> = base.iter().zip(&fwd).map(|(a, b)| a + b).collect();
        assert_eq!(acc, sum);
    }

    fn check_fast(n: usize, rows: usize, c: usize) {
        let table = rand_vec(rows * c, 4, 1.0);
        // Heavily repeated ids (n ≫ rows in one case) exercise the scatter-add.
        let ids: Vec<u32> = rand_vec(n, 5, 1.0)
            .iter()
            .map(|x| ((x.abs() * rows as f32) as usize).min(rows - 1) as u32)
            .collect();
        let (mut out, mut out_r) = (vec![f32::NAN; n * c], vec![0.0; n * c]);
        embedding_forward(&mut out, &ids, &table, c);
        embedding_forward_reference(&mut out_r, &ids, &table, c);
        assert_eq!(out, out_r);
        let base = rand_vec(n * c, 6, 1.0);
        let (mut a, mut a_r) = (base.clone(), base);
        embedding_accumulate(&mut a, &ids, &table, c);
        embedding_accumulate_reference(&mut a_r, &ids, &table, c);
        assert_eq!(a, a_r);
        let dout = rand_vec(n * c, 7, 1.0);
        let d0 = rand_vec(rows * c, 8, 1.0);
        let (mut d, mut d_r) = (d0.clone(), d0);
        embedding_backward(&mut d, &dout, &ids, c);
        embedding_backward_reference(&mut d_r, &dout, &ids, c);
        // Same additions in the same order: bitwise equal.
        assert_close(
            &d,
            &d_r,
            0.0,
            0.0,
            &format!("embedding_backward n={n} rows={rows} c={c}"),
        );
    }

    #[test]
    fn fast_matches_reference() {
        check_fast(37, 23, 19);
        check_fast(2048, 97, 64);
        check_fast(512, 8192, 256);
    }

    #[test]
    #[should_panic(expected = "outside the table")]
    fn out_of_range_id_panics_with_message() {
        let mut out = vec![0.0; 4];
        embedding_forward(&mut out, &[0, 3], &[0.0; 6], 2);
    }
}
