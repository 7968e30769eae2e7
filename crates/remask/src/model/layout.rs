//! The parameter layout: named views into one flat `f32` buffer, and their initialisation.
//!
//! Layers hold [`Param`] handles (offset + length), never slices, so the same layer code reads the
//! parameter buffer and writes the gradient buffer, which share the layout.

use remask_kernels::rng::{KeyedRng, Purpose};

use super::TensorInfo;

/// How a tensor is initialised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Normal(0, std).
    Normal(f32),
    Zeros,
    Ones,
}

/// A handle to a contiguous range of the flat buffer (one tensor, or several adjacent ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param {
    pub offset: usize,
    pub len: usize,
}

impl Param {
    /// The range this handle covers in `buf`.
    #[inline]
    pub fn get<'a>(&self, buf: &'a [f32]) -> &'a [f32] {
        &buf[self.offset..self.offset + self.len]
    }

    /// The range this handle covers in `buf`, writable.
    #[inline]
    pub fn get_mut<'a>(&self, buf: &'a mut [f32]) -> &'a mut [f32] {
        &mut buf[self.offset..self.offset + self.len]
    }

    /// One handle covering `self` and `next`, which must follow it directly.
    pub fn join(self, next: Param) -> Param {
        assert_eq!(
            self.offset + self.len,
            next.offset,
            "Param::join: tensors are not adjacent"
        );
        Param {
            offset: self.offset,
            len: self.len + next.len,
        }
    }
}

/// Two disjoint writable ranges of one buffer (`a` must lie before `b`).
pub fn pair_mut(buf: &mut [f32], a: Param, b: Param) -> (&mut [f32], &mut [f32]) {
    assert!(
        a.offset + a.len <= b.offset,
        "pair_mut: ranges overlap or are out of order"
    );
    let (lo, hi) = buf.split_at_mut(b.offset);
    (&mut lo[a.offset..a.offset + a.len], &mut hi[..b.len])
}

/// Builds the list of tensors, their offsets and their initialisation, in buffer order.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    tensors: Vec<TensorInfo>,
    inits: Vec<Init>,
    total: usize,
}

impl Layout {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a tensor. Weight decay follows the project rule: tensors with 2 or more dimensions.
    pub fn add(&mut self, name: impl Into<String>, shape: &[usize], init: Init) -> Param {
        let decay = shape.len() >= 2;
        self.add_with_decay(name, shape, init, decay)
    }

    /// Appends a tensor with an explicit weight-decay flag.
    pub fn add_with_decay(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        init: Init,
        decay: bool,
    ) -> Param {
        let len: usize = shape.iter().product();
        let p = Param {
            offset: self.total,
            len,
        };
        self.tensors.push(TensorInfo {
            name: name.into(),
            offset: self.total,
            shape: shape.to_vec(),
            weight_decay: decay,
        });
        self.inits.push(init);
        self.total += len;
        p
    }

    /// Total number of parameters.
    pub fn total(&self) -> usize {
        self.total
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn into_tensors(self) -> Vec<TensorInfo> {
        self.tensors
    }

    /// A freshly initialised parameter buffer. Each tensor draws from its own keyed stream
    /// (seed, Init, 0, tensor index), so adding a tensor never changes the others' values.
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let mut buf = vec![0.0f32; self.total];
        for (i, (t, init)) in self.tensors.iter().zip(&self.inits).enumerate() {
            let dst = &mut buf[t.offset..t.offset + t.numel()];
            match *init {
                Init::Zeros => dst.fill(0.0),
                Init::Ones => dst.fill(1.0),
                Init::Normal(std) => {
                    let mut rng = KeyedRng::new(seed, Purpose::Init, 0, i as u64);
                    for x in dst.iter_mut() {
                        *x = rng.normal() * std;
                    }
                }
            }
        }
        buf
    }
}

/// Finds a tensor by name.
pub fn find<'a>(tensors: &'a [TensorInfo], name: &str) -> Option<&'a TensorInfo> {
    tensors.iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_contiguous_and_init_follows_kind() {
        let mut l = Layout::new();
        let w = l.add("a.weight", &[3, 4], Init::Normal(0.02));
        let b = l.add("a.bias", &[3], Init::Zeros);
        let g = l.add("ln.weight", &[4], Init::Ones);
        assert_eq!((w.offset, b.offset, g.offset, l.total()), (0, 12, 15, 19));
        assert!(l.tensors()[0].weight_decay && !l.tensors()[1].weight_decay);
        let p = l.init(7);
        assert!(w.get(&p).iter().all(|&x| x != 0.0 && x.abs() < 0.2));
        assert!(b.get(&p).iter().all(|&x| x == 0.0));
        assert!(g.get(&p).iter().all(|&x| x == 1.0));
        assert_eq!(p, l.init(7));
        assert_ne!(p, l.init(8));
        assert_eq!(w.join(b).len, 15);
    }
}
