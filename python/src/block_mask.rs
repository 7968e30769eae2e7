//! `remask.BlockMask`: an attention-mask predicate (`remask::attention::MaskFn`, `True` = the query
//! may attend) over rows of T positions, combined with `&`, `|`, `~`, and compiled on use into the
//! kernels' block-sparse tiles (`remask_kernels::block_mask::BlockMask`: empty tiles skipped, full
//! tiles without a per-element test, partial tiles as bitmaps).
//!
//! B = batch rows (`None`: the mask is the same for every row and takes the batch of the call),
//! T = positions (queries and keys).

use std::sync::{Arc, Mutex};

use numpy::ndarray::Array3;
use numpy::{AllowTypeChange, IntoPyArray, PyArray3, PyArrayLike1, PyArrayLike2, PyArrayLikeDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use remask::attention::{MaskFn, DEFAULT_TILE};
use remask::PAD_DOC;
use remask_kernels::block_mask::BlockMask as Tiles;

use crate::error::value_error;

/// A mask predicate over `[B, T, T]` (query, key); see the module doc.
#[pyclass(module = "remask._native", name = "BlockMask", frozen)]
pub struct BlockMask {
    pred: MaskFn,
    /// B when the mask depends on the row (padding, document, prefix-LM, dense), else `None`.
    batch: Option<usize>,
    /// T.
    seq_len: usize,
    /// The last compilation: (B, tile) → tiles, reused while the shape of the calls stays the same.
    compiled: Mutex<Option<(usize, usize, Arc<Tiles>)>>,
}

impl BlockMask {
    fn new(pred: MaskFn, batch: Option<usize>, seq_len: usize) -> Self {
        Self { pred, batch, seq_len, compiled: Mutex::new(None) }
    }

    /// The tiles for a call with `batch` rows, T = `seq_len` and square tiles of `tile`; errors name
    /// what does not fit.
    pub fn tiles(&self, batch: usize, tq: usize, tk: usize, tile: usize) -> PyResult<Arc<Tiles>> {
        if tq != self.seq_len || tk != self.seq_len {
            return Err(value_error(format!(
                "the BlockMask covers {t} positions but q has {tq} and k/v {tk}: build it for T = {tq}",
                t = self.seq_len
            )));
        }
        if let Some(b) = self.batch {
            if b != batch {
                return Err(value_error(format!("the BlockMask has {b} rows but q has batch {batch}")));
            }
        }
        if tile == 0 {
            return Err(value_error("tile must be at least 1"));
        }
        let mut cache = self.compiled.lock().map_err(|_| value_error("BlockMask cache poisoned by an earlier panic"))?;
        if let Some((b, t, tiles)) = cache.as_ref() {
            if *b == batch && *t == tile {
                return Ok(Arc::clone(tiles));
            }
        }
        let tiles = Arc::new(self.pred.compile(batch, 1, tq, tk, tile));
        *cache = Some((batch, tile, Arc::clone(&tiles)));
        Ok(tiles)
    }

    fn combine(&self, other: &BlockMask, op: &str, pred: MaskFn) -> PyResult<BlockMask> {
        if self.seq_len != other.seq_len {
            return Err(value_error(format!("cannot combine masks of T = {} and T = {} with {op}", self.seq_len, other.seq_len)));
        }
        let batch = match (self.batch, other.batch) {
            (Some(a), Some(b)) if a != b => {
                return Err(value_error(format!("cannot combine masks of {a} and {b} rows with {op}")));
            }
            (a, b) => a.or(b),
        };
        Ok(BlockMask::new(pred, batch, self.seq_len))
    }
}

fn lengths_of(name: &str, lengths: &[i64], seq_len: usize) -> PyResult<Vec<u32>> {
    lengths
        .iter()
        .enumerate()
        .map(|(b, &l)| {
            if (0..=seq_len as i64).contains(&l) {
                Ok(l as u32)
            } else {
                Err(value_error(format!("{name}[{b}] = {l} must lie in [0, T = {seq_len}]")))
            }
        })
        .collect()
}

#[pymethods]
impl BlockMask {
    /// Every key allowed over T positions.
    #[staticmethod]
    fn full(seq_len: usize) -> Self {
        BlockMask::new(MaskFn::All, None, seq_len)
    }

    /// `k <= q` over T positions.
    #[staticmethod]
    fn causal(seq_len: usize) -> Self {
        BlockMask::new(MaskFn::causal(), None, seq_len)
    }

    /// Row b reads keys `k < lengths[b]` (padding at the end of each row). `lengths`: `[B]` integers
    /// (any array-like: a list, a NumPy array, a tensor's `.numpy()`).
    #[staticmethod]
    fn padding(lengths: PyArrayLike1<'_, i64, AllowTypeChange>, seq_len: usize) -> PyResult<Self> {
        let lengths = lengths_of("lengths", &lengths.as_array().to_vec(), seq_len)?;
        let b = lengths.len();
        Ok(BlockMask::new(MaskFn::padding(&lengths), Some(b), seq_len))
    }

    /// Packed documents: query and key in the same document. `doc_ids`: `[B, T]` integers, a
    /// negative id marks padding (attends to nothing, read by nothing). With `causal`, also `k <= q`.
    #[staticmethod]
    #[pyo3(signature = (doc_ids, causal=false))]
    fn document(doc_ids: PyArrayLike2<'_, i64, AllowTypeChange>, causal: bool) -> PyResult<Self> {
        let a = doc_ids.as_array();
        let (b, t) = a.dim();
        let mut ids = Vec::with_capacity(b * t);
        for (i, &d) in a.iter().enumerate() {
            if d >= PAD_DOC as i64 {
                return Err(value_error(format!("doc_ids[{}][{}] = {d} is too large (at most {})", i / t.max(1), i % t.max(1), PAD_DOC - 1)));
            }
            ids.push(if d < 0 { PAD_DOC } else { d as u32 });
        }
        Ok(BlockMask::new(MaskFn::document(&ids, t, causal), Some(b), t))
    }

    /// A window of `window` keys: ending at the query (`causal`: `q - window < k <= q`) or centred on
    /// it (`q - (window-1)//2 <= k <= q + window//2`).
    #[staticmethod]
    #[pyo3(signature = (seq_len, window, causal=false))]
    fn sliding(seq_len: usize, window: usize, causal: bool) -> PyResult<Self> {
        if window == 0 {
            return Err(value_error("window must be at least 1"));
        }
        Ok(BlockMask::new(MaskFn::sliding_window(window, causal), None, seq_len))
    }

    /// Prefix-LM: keys `k < prefix_lengths[b]` bidirectionally, causal (`k <= q`) after them.
    #[staticmethod]
    fn prefix_lm(prefix_lengths: PyArrayLike1<'_, i64, AllowTypeChange>, seq_len: usize) -> PyResult<Self> {
        let p = lengths_of("prefix_lengths", &prefix_lengths.as_array().to_vec(), seq_len)?;
        let b = p.len();
        Ok(BlockMask::new(MaskFn::prefix_lm(&p), Some(b), seq_len))
    }

    /// Any mask given densely: `allowed` `[B, T, T]` booleans (query, key). Evaluated per element
    /// when compiled (the built-ins are classified per tile from their bounds).
    #[staticmethod]
    fn from_dense(allowed: PyArrayLikeDyn<'_, bool, AllowTypeChange>) -> PyResult<Self> {
        let shape = allowed.shape().to_vec();
        let a = allowed.as_array();
        let [b, tq, tk] = shape[..] else {
            return Err(value_error(format!("from_dense: expected [B, T, T] booleans, got shape {shape:?}")));
        };
        if tq != tk {
            return Err(value_error(format!("from_dense: expected [B, T, T], got [{b}, {tq}, {tk}]")));
        }
        let dense: Arc<Vec<bool>> = Arc::new(a.iter().copied().collect());
        let t = tq;
        let pred = MaskFn::custom(move |bi, _h, q, k| dense.get((bi * t + q) * t + k).copied().unwrap_or(false));
        Ok(BlockMask::new(pred, Some(b), t))
    }

    /// T, the positions the mask covers.
    #[getter]
    fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// B for row-dependent masks, `None` for masks that are the same for every row.
    #[getter]
    fn batch(&self) -> Option<usize> {
        self.batch
    }

    fn __and__(&self, other: &Bound<'_, BlockMask>) -> PyResult<BlockMask> {
        let o = other.get();
        self.combine(o, "&", self.pred.clone() & o.pred.clone())
    }

    fn __or__(&self, other: &Bound<'_, BlockMask>) -> PyResult<BlockMask> {
        let o = other.get();
        self.combine(o, "|", self.pred.clone() | o.pred.clone())
    }

    fn __invert__(&self) -> BlockMask {
        BlockMask::new(!self.pred.clone(), self.batch, self.seq_len)
    }

    /// The predicate on every element: `[B, T, T]` booleans (`batch` rows for a row-independent
    /// mask; default 1).
    #[pyo3(signature = (batch=None))]
    fn to_dense<'py>(&self, py: Python<'py>, batch: Option<usize>) -> PyResult<Bound<'py, PyArray3<bool>>> {
        let b = match (self.batch, batch) {
            (Some(own), Some(asked)) if own != asked => {
                return Err(value_error(format!("the mask has {own} rows, asked for {asked}")));
            }
            (Some(own), _) => own,
            (None, asked) => asked.unwrap_or(1),
        };
        let t = self.seq_len;
        let dense = self.pred.to_dense(b, 1, t, t);
        Ok(Array3::from_shape_vec((b, t, t), dense).map_err(|e| value_error(e.to_string()))?.into_pyarray(py))
    }

    /// Share of (query tile, key tile) pairs that are empty, i.e. skipped, for `batch` rows and
    /// square tiles of `tile`.
    #[pyo3(signature = (batch=None, tile=DEFAULT_TILE))]
    fn sparsity(&self, batch: Option<usize>, tile: usize) -> PyResult<f64> {
        let b = self.batch.or(batch).unwrap_or(1);
        Ok(self.tiles(b, self.seq_len, self.seq_len, tile)?.sparsity())
    }

    /// The tiles of row `row` as characters (`█` full, `▒` partial, `·` empty), for people.
    #[pyo3(signature = (row=0, tile=DEFAULT_TILE))]
    fn render(&self, row: usize, tile: usize) -> PyResult<String> {
        let b = self.batch.unwrap_or(row + 1);
        if row >= b {
            return Err(value_error(format!("row {row} of a mask with {b} rows")));
        }
        Ok(self.tiles(b, self.seq_len, self.seq_len, tile)?.render_tiles(row, 0))
    }

    fn __repr__(&self) -> String {
        let rows = self.batch.map_or("any".to_string(), |b| b.to_string());
        format!("BlockMask({:?}, batch={rows}, seq_len={})", self.pred, self.seq_len)
    }
}
