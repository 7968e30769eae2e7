//! Builds the parameter layout and the layer structs of each architecture, with Hugging Face names:
//! BERT's for the encoder, GPT-2's for the decoder, BART's for the encoder-decoder. Names of tensors
//! those models do not have (e.g. a final LayerNorm of a pre-LN encoder) follow the same style.

use super::block::Block;
use super::config::{Arch, ModelConfig, NormPlacement, PositionKind, Precision};
use super::embedding::{sinusoidal_table, Embeddings, Positions};
use super::head::LmHead;
use super::layout::{Init, Layout, Param};
use super::linear::Linear;
use super::mha::{Attention, InProj};
use super::norm::LayerNorm;
use super::params::Params;
use super::stack::Stack;

/// Everything a model is made of, before any buffer is allocated.
pub struct Built {
    pub layout: Layout,
    /// The encoder (Encoder, EncoderDecoder) or the decoder (Decoder).
    pub stack: Stack,
    /// The decoder of an encoder-decoder.
    pub decoder: Option<Stack>,
    pub head: LmHead,
}

impl Built {
    /// Flat parameters `values` over this layout, in the config's precision (the bf16 copy, when
    /// asked for, holds every linear weight of the stacks and the head).
    pub fn params(&self, values: Vec<f32>, precision: Precision) -> Params {
        let mut linears = self.stack.linear_weights();
        linears.extend(self.decoder.iter().flat_map(Stack::linear_weights));
        linears.extend(self.head.linear_weights());
        Params::new(values, precision, linears)
    }
}

/// Names of the q, k, v projections: separate (BERT, BART) or one fused tensor (GPT-2's `c_attn`).
enum Qkv {
    Separate([String; 3]),
    Fused(String),
}

struct AttnNames {
    qkv: Qkv,
    out: String,
}

struct BlockNames {
    attn: AttnNames,
    attn_ln: String,
    cross: Option<(AttnNames, String)>,
    fc1: String,
    fc2: String,
    ffn_ln: String,
}

struct Builder<'a> {
    cfg: &'a ModelConfig,
    l: Layout,
}

impl Builder<'_> {
    fn normal(&self) -> Init {
        Init::Normal(self.cfg.init_std)
    }

    fn linear(&mut self, name: &str, c: usize, oc: usize) -> Linear {
        let w = self
            .l
            .add(format!("{name}.weight"), &[oc, c], self.normal());
        let b = self.l.add(format!("{name}.bias"), &[oc], Init::Zeros);
        Linear {
            w,
            b: Some(b),
            c,
            oc,
        }
    }

    fn layer_norm(&mut self, name: &str) -> LayerNorm {
        let c = self.cfg.d_model;
        let w = self.l.add(format!("{name}.weight"), &[c], Init::Ones);
        let b = self.l.add(format!("{name}.bias"), &[c], Init::Zeros);
        LayerNorm {
            w,
            b,
            c,
            eps: self.cfg.layer_norm_eps,
        }
    }

    fn attention(&mut self, names: &AttnNames, cross: bool) -> Attention {
        let c = self.cfg.d_model;
        let inp = match (&names.qkv, cross) {
            (Qkv::Fused(name), false) => InProj::SelfQkv(self.linear(name, c, 3 * c)),
            (Qkv::Fused(name), true) => {
                panic!("fused cross-attention projection {name} is not a layout this builder makes")
            }
            (Qkv::Separate([q, k, v]), _) => {
                let n = self.normal();
                let qw = self.l.add(format!("{q}.weight"), &[c, c], n);
                let kw = self.l.add(format!("{k}.weight"), &[c, c], n);
                let vw = self.l.add(format!("{v}.weight"), &[c, c], n);
                let qb = self.l.add(format!("{q}.bias"), &[c], Init::Zeros);
                let kb = self.l.add(format!("{k}.bias"), &[c], Init::Zeros);
                let vb = self.l.add(format!("{v}.bias"), &[c], Init::Zeros);
                if cross {
                    InProj::Cross {
                        q: Linear {
                            w: qw,
                            b: Some(qb),
                            c,
                            oc: c,
                        },
                        kv: Linear {
                            w: kw.join(vw),
                            b: Some(kb.join(vb)),
                            c,
                            oc: 2 * c,
                        },
                    }
                } else {
                    InProj::SelfQkv(Linear {
                        w: qw.join(kw).join(vw),
                        b: Some(qb.join(kb).join(vb)),
                        c,
                        oc: 3 * c,
                    })
                }
            }
        };
        let out = self.linear(&names.out, c, c);
        Attention {
            inp,
            out,
            heads: self.cfg.n_heads,
            head_dim: self.cfg.head_dim(),
        }
    }

    fn block(&mut self, names: &BlockNames) -> Block {
        let attn = self.attention(&names.attn, false);
        let attn_ln = self.layer_norm(&names.attn_ln);
        let cross = names.cross.as_ref().map(|(an, ln)| {
            let a = self.attention(an, true);
            (a, self.layer_norm(ln))
        });
        let (c, f) = (self.cfg.d_model, self.cfg.d_ff);
        let fc1 = self.linear(&names.fc1, c, f);
        let fc2 = self.linear(&names.fc2, f, c);
        let ffn_ln = self.layer_norm(&names.ffn_ln);
        Block {
            attn,
            attn_ln,
            cross,
            fc1,
            fc2,
            ffn_ln,
            norm: self.cfg.norm,
            gelu: self.cfg.gelu.kernel(),
            dropout: self.cfg.dropout,
        }
    }

    /// Position table (learned: `[max_positions + offset, C]`), token types, embedding LayerNorm.
    fn embeddings(&mut self, word: Param, pos: &str, types: Option<&str>, ln: &str) -> Embeddings {
        let cfg = self.cfg;
        let c = cfg.d_model;
        let positions = match cfg.positions {
            PositionKind::Learned => {
                let rows = cfg.max_positions + cfg.position_offset;
                let table = self.l.add(pos, &[rows, c], self.normal());
                Positions::Learned {
                    table,
                    offset: cfg.position_offset,
                }
            }
            PositionKind::Sinusoidal => Positions::Sinusoidal {
                table: sinusoidal_table(cfg.max_positions, c),
            },
        };
        let types = match types {
            Some(name) if cfg.type_vocab_size > 0 => {
                Some(self.l.add(name, &[cfg.type_vocab_size, c], self.normal()))
            }
            _ => None,
        };
        let ln = cfg.embedding_layer_norm.then(|| self.layer_norm(ln));
        Embeddings {
            word,
            positions,
            types,
            ln,
            scale: cfg.embed_scale,
            c,
            dropout: cfg.dropout,
        }
    }

    fn stack(
        &mut self,
        emb: Embeddings,
        blocks: Vec<Block>,
        final_ln: Option<&str>,
        site: u64,
    ) -> Stack {
        let final_ln = match (self.cfg.norm, final_ln) {
            (NormPlacement::Pre, Some(name)) => Some(self.layer_norm(name)),
            _ => None,
        };
        Stack {
            emb,
            blocks,
            final_ln,
            c: self.cfg.d_model,
            dropout: self.cfg.dropout,
            site,
        }
    }
}

fn sep(p: &str, q: &str, k: &str, v: &str) -> Qkv {
    Qkv::Separate([format!("{p}{q}"), format!("{p}{k}"), format!("{p}{v}")])
}

/// The layout and layers of `cfg` (which must be validated).
pub fn build(cfg: &ModelConfig) -> Built {
    let mut b = Builder {
        cfg,
        l: Layout::new(),
    };
    let (v, c) = (cfg.vocab_size, cfg.d_model);
    match cfg.arch {
        Arch::Encoder => {
            let word = b.l.add(
                "bert.embeddings.word_embeddings.weight",
                &[v, c],
                b.normal(),
            );
            let emb = b.embeddings(
                word,
                "bert.embeddings.position_embeddings.weight",
                Some("bert.embeddings.token_type_embeddings.weight"),
                "bert.embeddings.LayerNorm",
            );
            let blocks = (0..cfg.n_layers)
                .map(|i| {
                    let p = format!("bert.encoder.layer.{i}.");
                    b.block(&BlockNames {
                        attn: AttnNames {
                            qkv: sep(
                                &p,
                                "attention.self.query",
                                "attention.self.key",
                                "attention.self.value",
                            ),
                            out: format!("{p}attention.output.dense"),
                        },
                        attn_ln: format!("{p}attention.output.LayerNorm"),
                        cross: None,
                        fc1: format!("{p}intermediate.dense"),
                        fc2: format!("{p}output.dense"),
                        ffn_ln: format!("{p}output.LayerNorm"),
                    })
                })
                .collect();
            let stack = b.stack(emb, blocks, Some("bert.encoder.LayerNorm"), 1);
            let dense = b.linear("cls.predictions.transform.dense", c, c);
            let ln = b.layer_norm("cls.predictions.transform.LayerNorm");
            let decoder = if cfg.tie_embeddings {
                word
            } else {
                b.l.add("cls.predictions.decoder.weight", &[v, c], b.normal())
            };
            let bias = b.l.add("cls.predictions.bias", &[v], Init::Zeros);
            let head = LmHead {
                transform: Some((dense, ln)),
                gelu: cfg.gelu.kernel(),
                decoder,
                bias: Some(bias),
                bias_trainable: true,
                v,
                c,
            };
            Built {
                layout: b.l,
                stack,
                decoder: None,
                head,
            }
        }
        Arch::Decoder => {
            let word = b.l.add("transformer.wte.weight", &[v, c], b.normal());
            let emb = b.embeddings(
                word,
                "transformer.wpe.weight",
                Some("transformer.wtt.weight"),
                "transformer.ln_emb",
            );
            let blocks = (0..cfg.n_layers)
                .map(|i| {
                    let p = format!("transformer.h.{i}.");
                    b.block(&BlockNames {
                        attn: AttnNames {
                            qkv: Qkv::Fused(format!("{p}attn.c_attn")),
                            out: format!("{p}attn.c_proj"),
                        },
                        attn_ln: format!("{p}ln_1"),
                        cross: None,
                        fc1: format!("{p}mlp.c_fc"),
                        fc2: format!("{p}mlp.c_proj"),
                        ffn_ln: format!("{p}ln_2"),
                    })
                })
                .collect();
            let stack = b.stack(emb, blocks, Some("transformer.ln_f"), 1);
            let decoder = if cfg.tie_embeddings {
                word
            } else {
                b.l.add("lm_head.weight", &[v, c], b.normal())
            };
            let head = LmHead {
                transform: None,
                gelu: cfg.gelu.kernel(),
                decoder,
                bias: None,
                bias_trainable: false,
                v,
                c,
            };
            Built {
                layout: b.l,
                stack,
                decoder: None,
                head,
            }
        }
        Arch::EncoderDecoder => {
            let word = b.l.add("model.shared.weight", &[v, c], b.normal());
            let side = |b: &mut Builder, which: &str, layers: usize, cross: bool, site: u64| {
                let emb = b.embeddings(
                    word,
                    &format!("model.{which}.embed_positions.weight"),
                    (!cross)
                        .then(|| format!("model.{which}.embed_types.weight"))
                        .as_deref(),
                    &format!("model.{which}.layernorm_embedding"),
                );
                let blocks = (0..layers)
                    .map(|i| {
                        let p = format!("model.{which}.layers.{i}.");
                        b.block(&BlockNames {
                            attn: AttnNames {
                                qkv: sep(
                                    &p,
                                    "self_attn.q_proj",
                                    "self_attn.k_proj",
                                    "self_attn.v_proj",
                                ),
                                out: format!("{p}self_attn.out_proj"),
                            },
                            attn_ln: format!("{p}self_attn_layer_norm"),
                            cross: cross.then(|| {
                                (
                                    AttnNames {
                                        qkv: sep(
                                            &p,
                                            "encoder_attn.q_proj",
                                            "encoder_attn.k_proj",
                                            "encoder_attn.v_proj",
                                        ),
                                        out: format!("{p}encoder_attn.out_proj"),
                                    },
                                    format!("{p}encoder_attn_layer_norm"),
                                )
                            }),
                            fc1: format!("{p}fc1"),
                            fc2: format!("{p}fc2"),
                            ffn_ln: format!("{p}final_layer_norm"),
                        })
                    })
                    .collect();
                b.stack(
                    emb,
                    blocks,
                    Some(&format!("model.{which}.layer_norm")),
                    site,
                )
            };
            let stack = side(&mut b, "encoder", cfg.n_layers, false, 1);
            let dec = side(&mut b, "decoder", cfg.n_decoder_layers, true, 2);
            let decoder = if cfg.tie_embeddings {
                word
            } else {
                b.l.add("lm_head.weight", &[v, c], b.normal())
            };
            // HF registers `final_logits_bias` as a buffer: it is kept (and exported) but never trained.
            let bias =
                b.l.add_with_decay("final_logits_bias", &[1, v], Init::Zeros, false);
            let head = LmHead {
                transform: None,
                gelu: cfg.gelu.kernel(),
                decoder,
                bias: Some(bias),
                bias_trainable: false,
                v,
                c,
            };
            Built {
                layout: b.l,
                stack,
                decoder: Some(dec),
                head,
            }
        }
    }
}
