"""What a perfect reader scores on a synthetic chest X-ray benchmark: the ceiling of the report metrics.

The generator writes each report from the study's truth (findings, prior findings, change) and from chance: the
wording ("increased" or "larger", "consolidation" or "opacity": labels.jsonl keeps the word as the attribute
`term`, the oracle draws it anew), which negatives are stated, whether a comparison sentence opens the findings. No model can foresee the chance part, so even a reader that sees every finding
exactly does not score 1. The oracle simulates `draws` reports for each study from what it is allowed to know
and answers with the Bayes decision of each metric:

  clinical F1        an observation is positive when at least half of the simulated reports state it positive
  temporal entity F1 the keyword set with the highest mean pair F1 against the simulated reports
                     (medvlm.evaluate.temporal.bayes_keywords)

What the oracle knows (`knows`):
  "pair"     the current findings, the prior findings and the change (a model that reads both images perfectly)
  "current"  the current image's findings and whether the study has a prior (the synthetic report prompt says
             so: "... compared with the prior study"), not what the prior showed: its findings and the change
             are drawn as the generator draws them (a model without the prior image, at its best)

The gap between the two is the most a prior image can add on the benchmark; benchmarks/temporal_ablation.py prints
both beside its trained models. Python: `oracle_scores(dataset_dir)`; CLI: `medvlm synth oracle DIR`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medvlm.synth import cxr_text
from medvlm.synth.cxr import CONSOLIDATION_TERMS, FINDINGS, CXRConfig, draw_anatomy, draw_prior_findings

KNOWLEDGE = ("pair", "current")
_NOT_ATTRIBUTES = ("name", "present", "prior_present", "prior", "prior_mask", "change", "mask")


def study_truth(row: dict[str, Any]) -> tuple[dict, dict | None, dict]:
    """(current, prior or None, change) of one labels.jsonl row: what the generator wrote its report from.

    current / prior: finding name -> attributes of the findings present on each image; change: finding -> label.
    """
    study = row.get("study_id", "?")
    try:
        findings = row["findings"]
        current = {f["name"]: {k: v for k, v in f.items() if k not in _NOT_ATTRIBUTES}
                   for f in findings if f["present"]}
        prior = ({f["name"]: dict(f["prior"]) for f in findings if f.get("prior_present")}
                 if row["has_prior"] else None)
        change = {f["name"]: f["change"] for f in findings if f.get("change")}
    except (KeyError, TypeError) as exc:
        raise ValueError(f"labels.jsonl, study {study}: not a synthetic CXR truth row (missing {exc}); the oracle needs "
                         f"the labels.jsonl of `medvlm synth cxr`") from None
    unknown = sorted(set(current) - set(FINDINGS))
    if unknown:
        raise ValueError(f"labels.jsonl, study {study}, field findings: unknown findings {unknown}")
    return current, prior, change


def simulate_reports(row: dict[str, Any], config: CXRConfig, rng: np.random.Generator, draws: int,
                     knows: str = "pair") -> list[cxr_text.CXRText]:
    """`draws` reports the generator could have written for the study of labels.jsonl `row` (see module doc)."""
    if knows not in KNOWLEDGE:
        raise ValueError(f"knows={knows!r}: use one of {KNOWLEDGE}")
    current, prior, change = study_truth(row)
    terms, weights = list(CONSOLIDATION_TERMS), list(CONSOLIDATION_TERMS.values())
    texts = []
    for _ in range(draws):
        if knows == "current" and row["has_prior"]:  # the prior image unseen: its findings drawn anew
            prior, change = draw_prior_findings(rng, config, draw_anatomy(rng), current)
        term = str(rng.choice(terms, p=weights))  # the report's word for a consolidation is chance, not truth
        for findings in (current, prior or {}):
            if "consolidation" in findings:
                findings["consolidation"] = {**findings["consolidation"], "term": term}
        texts.append(cxr_text.write_text(rng, current, prior, change, temporal=config.temporal,
                                         style=config.report_style))
    return texts


def majority_labels(simulated: Sequence[dict[str, str]]) -> dict[str, str]:
    """Per observation "positive" when at least half of the label sets say positive, else "negative"."""
    out = {}
    for obs in cxr_text.OBSERVATIONS:
        positive = sum(labels.get(obs) == "positive" for labels in simulated)
        out[obs] = "positive" if simulated and 2 * positive >= len(simulated) else "negative"
    return out


def oracle_scores(dataset: str | Path, draws: int = 64, seed: int = 0, knows: Sequence[str] = KNOWLEDGE,
                  progress: bool = False) -> dict[str, dict[str, float]]:
    """Ceilings of clinical micro F1 (14 and 5) and temporal entity F1 on the test studies of a synthetic CXR
    dataset, per knowledge level: {"pair": {...}, "current": {...}}. The reference of each study is its report
    question's reference (temporal keywords) and the labels the generator stated for it (labels.jsonl `chexpert`),
    as the evaluation reads them."""
    from tqdm import tqdm

    from medvlm.evaluate.clinical import clinical_statistics
    from medvlm.evaluate.temporal import bayes_keywords, keyword_set_f1, temporal_entities

    root = Path(dataset)
    card = json.loads((root / "dataset.json").read_text())
    if card.get("kind") != "cxr":
        raise ValueError(f"{root / 'dataset.json'}: field kind is {card.get('kind')!r}; the oracle reads synthetic "
                         f"cxr datasets")
    config = CXRConfig(**{k: v for k, v in card["config"].items() if k in CXRConfig.__dataclass_fields__})
    references = {}
    with (root / "test.jsonl").open() as handle:
        for line in handle:
            question = json.loads(line)
            if question.get("task") == "report":
                references[question["study_id"]] = question["reference"]
    rows = []
    with (root / "labels.jsonl").open() as handle:
        for number, line in enumerate(handle, 1):
            row = json.loads(line)
            if row.get("split") != "test":
                continue
            if row.get("study_id") not in references:
                raise ValueError(f"{root / 'test.jsonl'}: no report question for study {row.get('study_id')} "
                                 f"(labels.jsonl line {number})")
            rows.append(row)
    if not rows:
        raise ValueError(f"{root / 'labels.jsonl'}: no test studies")

    out: dict[str, dict[str, float]] = {}
    for level in knows:
        rng = np.random.default_rng(seed)
        predicted, stated, temporal, with_prior = [], [], [], []
        for row in tqdm(rows, desc=f"oracle ({level})", unit="study", disable=not progress):
            texts = simulate_reports(row, config, rng, draws, knows=level)
            predicted.append(majority_labels([t.chexpert for t in texts]))
            stated.append(row["chexpert"])
            keywords = bayes_keywords([temporal_entities(t.report) for t in texts])
            score = keyword_set_f1(keywords, temporal_entities(references[row["study_id"]]))
            temporal.append(score)
            if row.get("has_prior"):
                with_prior.append(score)
        clinical = clinical_statistics(predicted, stated).aggregate()
        out[level] = {"temporal_f1": float(np.mean(temporal)),
                      "temporal_f1_studies_with_prior": float(np.mean(with_prior)) if with_prior else float("nan"),
                      "clinical_micro_f1_14": clinical["clinical_micro_f1_14"],
                      "clinical_micro_f1_5": clinical["clinical_micro_f1_5"], "studies": len(rows)}
    return out
