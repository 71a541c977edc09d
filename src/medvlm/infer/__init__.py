"""Inference: `generate` for one prompt, `predict` for a questions file in batches (resumable, shardable)."""
