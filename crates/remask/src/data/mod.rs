//! Data pipeline: readers, tokenizer, shards, packing, batching.
