"""Stage 3–4: leakage-free splits, materialised data sets and per-worker shards."""
