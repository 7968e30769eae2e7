//! Tests of the attention kernels against their reference twins and finite differences.
