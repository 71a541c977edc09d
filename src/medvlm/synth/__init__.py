"""Synthetic studies with known ground truth: cxr, derm, path, ct (images, masks, reports, questions).

`medvlm.synth.dataset.write_dataset(out, kind, n, ...)` writes a whole benchmark folder;
`medvlm.synth.dataset.generate_one(kind, index, seed=..., config=...)` draws one study in memory.
Generators are registered in `medvlm.synth.dataset.REGISTRY`.
"""
