//! Embedding lookup (token, position, token-type tables) and its scatter-add backward.
//!
//! Shapes: ids [N], table [rows, C], out/dout [N, C].

/// out[N,C] = table[ids[i]]. Overwrites out.
pub fn embedding_forward(out: &mut [f32], ids: &[u32], table: &[f32], c: usize) {
    embedding_forward_reference(out, ids, table, c);
}

/// out[N,C] += table[ids[i]].
pub fn embedding_accumulate(out: &mut [f32], ids: &[u32], table: &[f32], c: usize) {
    embedding_accumulate_reference(out, ids, table, c);
}

/// dtable[ids[i]] += dout[i] for every row i.
pub fn embedding_backward(dtable: &mut [f32], dout: &[f32], ids: &[u32], c: usize) {
    embedding_backward_reference(dtable, dout, ids, c);
}

/// Reference twin of [`embedding_forward`].
pub fn embedding_forward_reference(out: &mut [f32], ids: &[u32], table: &[f32], c: usize) {
    assert!(out.len() >= ids.len() * c);
    for (i, &id) in ids.iter().enumerate() {
        let id = id as usize;
        assert!((id + 1) * c <= table.len(), "embedding id {id} out of range");
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
        assert!((id + 1) * c <= table.len(), "embedding id {id} out of range");
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
        assert!((id + 1) * c <= dtable.len(), "embedding id {id} out of range");
        for k in 0..c {
            dtable[id * c + k] += dout[i * c + k];
        }
    }
}
