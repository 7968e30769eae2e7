//! Dense masked attention through GEMMs: the baseline the fused kernel is benchmarked against
//! (what PyTorch's SDPA "math" path does). Filled in after the first API commit.
