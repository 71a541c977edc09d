"""medvlm: build, train, run and evaluate medical vision-language models.

`import medvlm` is instant (no torch): `medvlm.load` is resolved on first use. transformers' Auto classes learn
model_type "medvlm" when `medvlm.models` is imported (which `medvlm.load` does).
"""

__version__ = "0.1.0"

# name -> module that defines it; imported on first attribute access (PEP 562) to keep `import medvlm` light.
_LAZY = {"load": "medvlm.api"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medvlm' has no attribute {name!r}")
