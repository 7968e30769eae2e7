//! Plain masked attention: the twins the fused kernels are tested against. One query at a time,
//! the mask read element by element through `BlockMask::allows`.

use super::AttnShape;
use crate::block_mask::BlockMask;

/// Reference forward. q `[B,H,Tq,D]`, k, v `[B,H,Tk,D]` → out `[B,H,Tq,D]`, lse `[B,H,Tq]` (both
/// overwritten). Fully masked rows: out = 0, lse = -∞.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward_reference(
    out: &mut [f32],
    lse: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &BlockMask,
    shape: AttnShape,
    scale: f32,
) {
    shape.check(mask, q.len(), k.len(), v.len());
    assert_eq!(out.len(), shape.q_len());
    assert_eq!(lse.len(), shape.lse_len());
    let AttnShape {
        batch,
        heads,
        tq,
        tk,
        head_dim: d,
    } = shape;
    let mut s = vec![0f32; tk];
    for b in 0..batch {
        for h in 0..heads {
            let bh = b * heads + h;
            for i in 0..tq {
                let qi = &q[(bh * tq + i) * d..][..d];
                // pass 1: masked scores and their max
                let mut m = f32::NEG_INFINITY;
                for j in 0..tk {
                    if mask.allows(b, h, i, j) {
                        let kj = &k[(bh * tk + j) * d..][..d];
                        s[j] = scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>();
                        m = m.max(s[j]);
                    } else {
                        s[j] = f32::NEG_INFINITY;
                    }
                }
                let oi = &mut out[(bh * tq + i) * d..][..d];
                oi.iter_mut().for_each(|x| *x = 0.0);
                if m == f32::NEG_INFINITY {
                    lse[bh * tq + i] = f32::NEG_INFINITY;
                    continue;
                }
                // pass 2: exponentials, their sum and the weighted sum of values
                let mut l = 0f32;
                for j in 0..tk {
                    if s[j] == f32::NEG_INFINITY {
                        continue;
                    }
                    let p = (s[j] - m).exp();
                    l += p;
                    let vj = &v[(bh * tk + j) * d..][..d];
                    oi.iter_mut().zip(vj).for_each(|(o, x)| *o += p * x);
                }
                oi.iter_mut().for_each(|x| *x /= l);
                lse[bh * tq + i] = m + l.ln();
            }
        }
    }
}

/// Reference backward. dq `[B,H,Tq,D]`, dk, dv `[B,H,Tk,D]` are overwritten.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward_reference(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &[f32],
    lse: &[f32],
    mask: &BlockMask,
    shape: AttnShape,
    scale: f32,
) {
    shape.check(mask, q.len(), k.len(), v.len());
    assert_eq!(dq.len(), shape.q_len());
    assert_eq!(dk.len(), shape.kv_len());
    assert_eq!(dv.len(), shape.kv_len());
    assert_eq!(dout.len(), shape.q_len());
    assert_eq!(out.len(), shape.q_len());
    assert_eq!(lse.len(), shape.lse_len());
    let _ = out; // The reference recomputes D = Σ_j p_j·dp_j instead of dout·out.
    dq.iter_mut()
        .chain(dk.iter_mut())
        .chain(dv.iter_mut())
        .for_each(|x| *x = 0.0);
    let AttnShape {
        batch,
        heads,
        tq,
        tk,
        head_dim: d,
    } = shape;
    let mut p = vec![0f32; tk];
    let mut dp = vec![0f32; tk];
    for b in 0..batch {
        for h in 0..heads {
            let bh = b * heads + h;
            for i in 0..tq {
                let li = lse[bh * tq + i];
                if li == f32::NEG_INFINITY {
                    continue; // fully masked row: no gradient flows
                }
                let qi = &q[(bh * tq + i) * d..][..d];
                let doi = &dout[(bh * tq + i) * d..][..d];
                // forward: p_j = exp(scale·q_i·k_j − lse_i) where allowed
                let mut dsum = 0f32;
                for j in 0..tk {
                    if mask.allows(b, h, i, j) {
                        let kj = &k[(bh * tk + j) * d..][..d];
                        let vj = &v[(bh * tk + j) * d..][..d];
                        let s = scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>();
                        p[j] = (s - li).exp();
                        dp[j] = doi.iter().zip(vj).map(|(a, b)| a * b).sum::<f32>();
                        dsum += p[j] * dp[j];
                    } else {
                        p[j] = 0.0;
                        dp[j] = 0.0;
                    }
                }
                // backward of out_i = Σ_j p_j v_j and of the softmax: ds_j = p_j (dp_j − Σ p·dp)
                for j in 0..tk {
                    if p[j] == 0.0 && !mask.allows(b, h, i, j) {
                        continue;
                    }
                    let ds = p[j] * (dp[j] - dsum) * scale;
                    let kj = &k[(bh * tk + j) * d..][..d];
                    let dqi = &mut dq[(bh * tq + i) * d..][..d];
                    dqi.iter_mut().zip(kj).for_each(|(g, x)| *g += ds * x);
                    let dkj = &mut dk[(bh * tk + j) * d..][..d];
                    dkj.iter_mut().zip(qi).for_each(|(g, x)| *g += ds * x);
                    let dvj = &mut dv[(bh * tk + j) * d..][..d];
                    dvj.iter_mut().zip(doi).for_each(|(g, x)| *g += p[j] * x);
                }
            }
        }
    }
}
