"""medvlm: build, train, run and evaluate medical vision-language models."""

__version__ = "0.1.0"
