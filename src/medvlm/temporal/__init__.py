"""Temporal studies (Libra): pairing each study with its prior (`priors`) and current-only views of pair data."""

from medvlm.temporal.priors import PriorColumns, PriorPair, find_priors, write_pairs
from medvlm.temporal.records import drop_priors

__all__ = ["PriorColumns", "PriorPair", "drop_priors", "find_priors", "write_pairs"]
