//! `Box<dyn TrainModel>` (what `model::new_model` returns) is itself a [`TrainModel`], so the
//! generic trainer drives a model chosen at run time from the config's `arch`.

use crate::model::{ModelConfig, StepStats, TensorInfo, TrainModel};
use crate::{Batch, Result};

impl<T: TrainModel + ?Sized> TrainModel for Box<T> {
    fn config(&self) -> &ModelConfig {
        (**self).config()
    }
    fn params(&self) -> &[f32] {
        (**self).params()
    }
    fn params_mut(&mut self) -> &mut [f32] {
        (**self).params_mut()
    }
    fn grads(&self) -> &[f32] {
        (**self).grads()
    }
    fn grads_mut(&mut self) -> &mut [f32] {
        (**self).grads_mut()
    }
    fn params_and_grads(&mut self) -> (&mut [f32], &[f32]) {
        (**self).params_and_grads()
    }
    fn tensors(&self) -> &[TensorInfo] {
        (**self).tensors()
    }
    fn forward_backward(
        &mut self,
        batch: &Batch,
        grad_scale: f32,
        dropout_key: u64,
    ) -> Result<StepStats> {
        (**self).forward_backward(batch, grad_scale, dropout_key)
    }
    fn forward_eval(&mut self, batch: &Batch) -> Result<StepStats> {
        (**self).forward_eval(batch)
    }
    fn last_label_losses(&self) -> &[f32] {
        (**self).last_label_losses()
    }
    fn logits(&mut self, batch: &Batch) -> Result<&[f32]> {
        (**self).logits(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::testing::{BigramModel, SyntheticSource, TaskKind};
    use crate::BatchSource;

    #[test]
    fn a_boxed_model_behaves_like_the_model() {
        let mut plain = BigramModel::new(6, 0.0, 3);
        let mut boxed: Box<dyn TrainModel> = Box::new(BigramModel::new(6, 0.0, 3));
        let b = SyntheticSource::new(4, 5, 6, 1, TaskKind::Clm, false)
            .batch(0, 4, 0.0)
            .unwrap();
        assert_eq!(
            plain.forward_backward(&b, 0.5, 9).unwrap(),
            boxed.forward_backward(&b, 0.5, 9).unwrap()
        );
        assert_eq!(plain.grads(), boxed.grads());
        assert_eq!(plain.last_label_losses(), boxed.last_label_losses());
        assert_eq!(plain.tensors(), boxed.tensors());
    }
}
