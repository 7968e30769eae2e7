//! The KV cache and the incremental decoder: each new token costs one position. Works for the
//! decoder-only model (GPT-2: pre-LN, final `ln_f`) and for the decoder of an encoder-decoder
//! (BART: post-LN, cross-attention over the encoder output, whose keys and values are computed once).
//!
//! R = rows decoded together (batch or beams), C = channels, H = heads, D = C / H, V = vocabulary,
//! L = cached positions of a row, S = real source positions of a row.
//!
//! The layers are the model's own (`model::build`), read from the same flat parameter buffer; only
//! the attention differs: one query row against the row's cached keys, so no mask is needed (the
//! cache holds exactly the positions the query may read: causal self-attention, real source tokens).
//! It computes in f32, as all inference does (`infer::load` loads every model in f32).

use remask_kernels::gelu::gelu_forward;

use crate::model::block::Block;
use crate::model::build::build;
use crate::model::config::{Arch, ModelConfig, NormPlacement};
use crate::model::embedding::{EmbActs, Tokens};
use crate::model::head::{HeadActs, LmHead};
use crate::model::mha::{Attention, InProj};
use crate::model::norm::{LayerNorm, NormActs};
use crate::model::params::Weights;
use crate::model::stack::Stack;
use crate::{Error, Result, IGNORE_INDEX};

/// Cached keys and values of one layer for one row, each `[L, C]` (heads side by side, as the
/// projections produce them); cross-attention keys and values `[S, C]`.
#[derive(Clone, Debug, Default)]
pub struct LayerCache {
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub cross_k: Vec<f32>,
    pub cross_v: Vec<f32>,
}

/// The cache of one row.
#[derive(Clone, Debug, Default)]
pub struct RowCache {
    pub layers: Vec<LayerCache>,
    /// L: positions decoded so far (the next token's position).
    pub len: usize,
    /// S: source positions (encoder-decoder).
    pub src_len: usize,
}

/// Keys and values of every layer for every row.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    pub rows: Vec<RowCache>,
}

impl KvCache {
    /// An empty cache for `rows` rows of a model with `layers` decoder layers.
    pub fn new(rows: usize, layers: usize) -> Self {
        Self {
            rows: vec![
                RowCache {
                    layers: vec![LayerCache::default(); layers],
                    len: 0,
                    src_len: 0
                };
                rows
            ],
        }
    }

    /// Row i becomes a copy of old row `from[i]` (beam search).
    pub fn reorder(&mut self, from: &[usize]) {
        self.rows = from.iter().map(|&i| self.rows[i].clone()).collect();
    }
}

/// The decoder of a model, run one position per row per step.
pub struct Incremental {
    cfg: ModelConfig,
    stack: Stack,
    head: LmHead,
    emb: EmbActs,
    head_acts: HeadActs,
}

/// out[C] = softmax(q·Kᵀ·scale)·V over the `l` cached rows of k, v `[L,C]`, per head.
#[allow(clippy::too_many_arguments)]
fn attend(
    out: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    l: usize,
    h: usize,
    d: usize,
    scores: &mut Vec<f32>,
) {
    let c = h * d;
    let scale = 1.0 / (d as f32).sqrt();
    scores.resize(l, 0.0);
    for hi in 0..h {
        let qh = &q[hi * d..(hi + 1) * d];
        // pass 1: scores and their max.
        let mut mx = f32::NEG_INFINITY;
        for j in 0..l {
            let kj = &k[j * c + hi * d..j * c + (hi + 1) * d];
            let s = qh.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale;
            scores[j] = s;
            mx = mx.max(s);
        }
        // pass 2: exp and sum; pass 3: weighted sum of values.
        let mut sum = 0.0f32;
        for s in scores.iter_mut().take(l) {
            *s = (*s - mx).exp();
            sum += *s;
        }
        let oh = &mut out[hi * d..(hi + 1) * d];
        oh.fill(0.0);
        if l == 0 {
            continue;
        }
        for j in 0..l {
            let p = scores[j] / sum;
            let vj = &v[j * c + hi * d..j * c + (hi + 1) * d];
            for (o, &x) in oh.iter_mut().zip(vj) {
                *o += p * x;
            }
        }
    }
}

/// A residual sublayer on R rows: pre-LN `x + f(LN(x))`, post-LN `LN(x + f(x))`.
fn residual(
    ln: &LayerNorm,
    norm: NormPlacement,
    x: &[f32],
    params: &[f32],
    r: usize,
    f: impl FnOnce(&mut [f32], &[f32]),
) -> Vec<f32> {
    let c = ln.c;
    let mut normed = NormActs::default();
    let mut fo = vec![0.0; r * c];
    match norm {
        NormPlacement::Pre => {
            ln.forward(&mut normed, x, params, r);
            f(&mut fo, &normed.out);
            fo.iter_mut().zip(x).for_each(|(o, &a)| *o += a);
            fo
        }
        NormPlacement::Post => {
            f(&mut fo, x);
            fo.iter_mut().zip(x).for_each(|(o, &a)| *o += a);
            ln.forward(&mut normed, &fo, params, r);
            normed.out
        }
    }
}

impl Incremental {
    /// The decoder of `cfg` (decoder-only or encoder-decoder).
    pub fn new(cfg: &ModelConfig) -> Result<Self> {
        cfg.validate()?;
        let built = build(cfg);
        let stack = match cfg.arch {
            Arch::Decoder => built.stack,
            Arch::EncoderDecoder => built
                .decoder
                .ok_or_else(|| Error::Other("encoder-decoder without a decoder stack".into()))?,
            Arch::Encoder => {
                return Err(Error::config(
                    "model.arch",
                    "an encoder has no decoder to generate with (use fill-mask)",
                ))
            }
        };
        Ok(Self {
            cfg: cfg.clone(),
            stack,
            head: built.head,
            emb: EmbActs::default(),
            head_acts: HeadActs::default(),
        })
    }

    /// Decoder layers (the cache's layer count).
    pub fn layers(&self) -> usize {
        self.stack.blocks.len()
    }

    /// A cache for `rows` rows.
    pub fn cache(&self, rows: usize) -> KvCache {
        KvCache::new(rows, self.layers())
    }

    /// Computes the cross-attention keys and values of row `row` from its encoder output
    /// `enc[S,C]` (real source positions only).
    pub fn set_source(&self, cache: &mut KvCache, row: usize, enc: &[f32], params: &[f32]) {
        let c = self.cfg.d_model;
        let s = enc.len() / c;
        let rc = &mut cache.rows[row];
        rc.src_len = s;
        for (blk, lc) in self.stack.blocks.iter().zip(rc.layers.iter_mut()) {
            if let Some((
                Attention {
                    inp: InProj::Cross { kv, .. },
                    ..
                },
                _,
            )) = &blk.cross
            {
                let mut proj = vec![0.0; s * 2 * c];
                kv.forward(&mut proj, enc, Weights::fp32(params), s);
                lc.cross_k.clear();
                lc.cross_v.clear();
                for p in 0..s {
                    lc.cross_k
                        .extend_from_slice(&proj[p * 2 * c..p * 2 * c + c]);
                    lc.cross_v
                        .extend_from_slice(&proj[p * 2 * c + c..(p + 1) * 2 * c]);
                }
            }
        }
    }

    fn block_step(
        &self,
        blk: &Block,
        layer: usize,
        cache: &mut KvCache,
        x: &[f32],
        params: &[f32],
    ) -> Vec<f32> {
        let r = cache.rows.len();
        let (c, h, d) = (self.cfg.d_model, self.cfg.n_heads, self.cfg.head_dim());
        let mut scores = Vec::new();
        // Sublayer 1: causal self-attention; this position's key and value join the cache first.
        let x1 = residual(&blk.attn_ln, blk.norm, x, params, r, |out, inp| {
            let InProj::SelfQkv(qkv) = blk.attn.inp else {
                return;
            };
            let mut proj = vec![0.0; r * 3 * c];
            qkv.forward(&mut proj, inp, Weights::fp32(params), r);
            let mut y = vec![0.0; r * c];
            for (ri, rc) in cache.rows.iter_mut().enumerate() {
                let row = &proj[ri * 3 * c..(ri + 1) * 3 * c];
                let lc = &mut rc.layers[layer];
                lc.k.extend_from_slice(&row[c..2 * c]);
                lc.v.extend_from_slice(&row[2 * c..]);
                let l = lc.k.len() / c;
                attend(
                    &mut y[ri * c..(ri + 1) * c],
                    &row[..c],
                    &lc.k,
                    &lc.v,
                    l,
                    h,
                    d,
                    &mut scores,
                );
            }
            blk.attn.out.forward(out, &y, Weights::fp32(params), r);
        });
        // Sublayer 2: cross-attention over the cached source keys and values.
        let x2 = match &blk.cross {
            Some((cattn, cln)) => residual(cln, blk.norm, &x1, params, r, |out, inp| {
                let InProj::Cross { q, .. } = cattn.inp else {
                    return;
                };
                let mut qp = vec![0.0; r * c];
                q.forward(&mut qp, inp, Weights::fp32(params), r);
                let mut y = vec![0.0; r * c];
                for (ri, rc) in cache.rows.iter().enumerate() {
                    let lc = &rc.layers[layer];
                    attend(
                        &mut y[ri * c..(ri + 1) * c],
                        &qp[ri * c..(ri + 1) * c],
                        &lc.cross_k,
                        &lc.cross_v,
                        rc.src_len,
                        h,
                        d,
                        &mut scores,
                    );
                }
                cattn.out.forward(out, &y, Weights::fp32(params), r);
            }),
            None => x1,
        };
        // Sublayer 3: feed-forward.
        residual(&blk.ffn_ln, blk.norm, &x2, params, r, |out, inp| {
            let f = blk.fc1.oc;
            let (mut h1, mut h2) = (vec![0.0; r * f], vec![0.0; r * f]);
            blk.fc1.forward(&mut h1, inp, Weights::fp32(params), r);
            gelu_forward(&mut h2, &h1, blk.gelu);
            blk.fc2.forward(out, &h2, Weights::fp32(params), r);
        })
    }

    /// Feeds one token per row (`ids[R]`, at each row's next position) and returns the logits of the
    /// next token `[R,V]`.
    pub fn step(&mut self, cache: &mut KvCache, ids: &[u32], params: &[f32]) -> Result<&[f32]> {
        let r = cache.rows.len();
        if ids.len() != r {
            return Err(Error::shape("decoder step ids", r, ids.len()));
        }
        if let Some((i, &id)) = ids
            .iter()
            .enumerate()
            .find(|(_, &id)| id as usize >= self.cfg.vocab_size)
        {
            return Err(Error::shape(
                format!("token id of row {i}"),
                format!("< vocab_size ({})", self.cfg.vocab_size),
                id,
            ));
        }
        let positions: Vec<u32> = cache.rows.iter().map(|rc| rc.len as u32).collect();
        if let Some(&p) = positions
            .iter()
            .find(|&&p| p as usize >= self.cfg.max_positions)
        {
            return Err(Error::shape(
                "decoder position",
                format!("< model.max_positions ({})", self.cfg.max_positions),
                p,
            ));
        }
        let types = self.stack.emb.types.map(|_| vec![0u32; r]);
        self.stack.emb.forward(
            &mut self.emb,
            Tokens {
                ids,
                positions: &positions,
                types: types.as_deref(),
            },
            None,
            params,
        );
        let mut x = self.stack.emb.output(&self.emb).to_vec();
        for (l, blk) in self.stack.blocks.iter().enumerate() {
            x = self.block_step(blk, l, cache, &x, params);
        }
        if let Some(ln) = &self.stack.final_ln {
            let mut normed = NormActs::default();
            ln.forward(&mut normed, &x, params, r);
            x = normed.out;
        }
        for rc in cache.rows.iter_mut() {
            rc.len += 1;
        }
        LmHead::select_all(&mut self.head_acts, &vec![IGNORE_INDEX; r]);
        self.head
            .forward(&mut self.head_acts, &x, Weights::fp32(params));
        Ok(&self.head_acts.logits)
    }
}
