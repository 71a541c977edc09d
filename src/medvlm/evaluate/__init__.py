"""Evaluation: report metrics, clinical labels, VQA, classification and continual-learning scores.

Submodules are imported on demand (``from medvlm.evaluate import nlg``); this package imports nothing eagerly.
"""
