//! MLM masking: which input tokens are hidden and must be predicted, and how they are corrupted.
