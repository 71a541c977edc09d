"""Change accuracy: does a generated report state each finding's interval change (new / resolved / increased /
decreased / unchanged) as the ground truth says? For the synthetic temporal benchmark (`medvlm synth cxr
--temporal`, labels.jsonl `change`: {finding: label}).

    scores = change_accuracy(predicted_reports, [row["change"] for row in labels_rows])
    scores["change_accuracy"], scores["per_finding"]["pleural_effusion"]["accuracy"]

For each (report, finding) with a true change label:
1. find the sentences that mention the finding, with the clinical labeler's mention patterns
   (medvlm.evaluate.labeler.RULES: findings, hedged and anatomy phrases of the finding's CheXpert observation;
   the three devices, which CheXpert lumps into "Support Devices", by their own names in DEVICE_PHRASES);
2. the predicted change is the comparison word (CHANGE_PHRASES) that comes first in the first such sentence that
   has one; a mention without any is "no_change_stated", no mention is "not_mentioned" (both count as wrong);
3. accuracy = correct / labelled, per finding, per true change label, and over all (micro).
Laterality and size words are not checked: "the left effusion has increased" is right for a right effusion
that increased.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from medvlm.evaluate.labeler import RULES

CHANGES = ("new", "resolved", "increased", "decreased", "unchanged")

# synthetic finding -> CheXpert observations whose mention patterns name it
FINDING_OBSERVATIONS: dict[str, tuple[str, ...]] = {
    "cardiomegaly": ("Cardiomegaly",),
    "pleural_effusion": ("Pleural Effusion",),
    "pneumothorax": ("Pneumothorax",),
    "consolidation": ("Consolidation", "Lung Opacity"),
    "nodule": ("Lung Lesion",),
    "edema": ("Edema",),
    "atelectasis": ("Atelectasis",),
}
DEVICE_PHRASES: dict[str, re.Pattern] = {
    "ett": re.compile(r"\b(?:endotracheal tube|et tube|ett)\b"),
    "enteric_tube": re.compile(r"\b(?:enteric tube|nasogastric tube|ng tube|orogastric tube|og tube|feeding tube)\b"),
    "central_line": re.compile(r"\b(?:central (?:venous )?(?:line|catheter)|picc|(?:internal jugular|subclavian) "
                               r"(?:line|catheter))\b"),
}
CHANGE_PHRASES: dict[str, re.Pattern] = {
    "new": re.compile(r"\b(?:new|newly|interval development|developed|appeared)\b"),
    "resolved": re.compile(r"\b(?:resolved|resolution|cleared|removed|removal|no longer)\b"),
    "increased": re.compile(r"\b(?:increased|increase|increasing|larger|enlarging|worse|worsened|worsening|"
                            r"progressed|progression)\b"),
    "decreased": re.compile(r"\b(?:decreased|decrease|decreasing|smaller|improved|improving|improvement|reduced)\b"),
    "unchanged": re.compile(r"\b(?:unchanged|stable|no (?:interval )?change|similar|persistent|unaltered)\b"),
}
_SENTENCE_BREAK = re.compile(r"[.!?](?:\s+|$)|\n+")  # "1.2 cm" stays in one sentence


def _mentions(finding: str, sentence: str) -> bool:
    if finding in DEVICE_PHRASES:
        return DEVICE_PHRASES[finding].search(sentence) is not None
    if finding not in FINDING_OBSERVATIONS:
        raise ValueError(f"change label for unknown finding {finding!r}; known: "
                         f"{sorted(FINDING_OBSERVATIONS) + sorted(DEVICE_PHRASES)}")
    for observation in FINDING_OBSERVATIONS[finding]:
        rules = RULES[observation]
        for phrases in (rules.findings, rules.hedged, rules.anatomy):
            if phrases is not None and next(iter(phrases.finditer(sentence)), None) is not None:
                return True
    return False


def stated_change(report: str, finding: str) -> str:
    """The change the report states for `finding`: a CHANGES label, "no_change_stated" or "not_mentioned"."""
    mentioned = False
    for sentence in _SENTENCE_BREAK.split(report.lower()):
        if not _mentions(finding, sentence):
            continue
        mentioned = True
        found = [(m.start(), label) for label, pattern in CHANGE_PHRASES.items()
                 for m in [pattern.search(sentence)] if m is not None]
        if found:
            return min(found)[1]
    return "no_change_stated" if mentioned else "not_mentioned"


def change_accuracy(predictions: Sequence[str], change_labels: Sequence[Mapping[str, str]]) -> dict:
    """predictions: generated reports; change_labels: per report {finding: true change} (labels.jsonl `change`;
    empty for a study without prior). -> {"change_accuracy", "n", "per_finding": {finding: {"accuracy", "n"}},
    "per_change": {label: {"accuracy", "n"}}, "stated": {true label: {stated label: count}}};
    accuracy is None where n = 0."""
    if len(predictions) != len(change_labels):
        raise ValueError(f"{len(predictions)} predictions but {len(change_labels)} change label rows")
    per_finding: dict[str, list[int]] = {}
    per_change: dict[str, list[int]] = {c: [0, 0] for c in CHANGES}
    stated: dict[str, dict[str, int]] = {c: {} for c in CHANGES}
    for index, (report, labels) in enumerate(zip(predictions, change_labels, strict=True)):
        for finding, truth in labels.items():
            if truth not in CHANGES:
                raise ValueError(f"change label row {index}: {finding}={truth!r}; use one of {CHANGES}")
            said = stated_change(report, finding)
            correct = int(said == truth)
            per_finding.setdefault(finding, [0, 0])
            per_finding[finding][0] += correct
            per_finding[finding][1] += 1
            per_change[truth][0] += correct
            per_change[truth][1] += 1
            stated[truth][said] = stated[truth].get(said, 0) + 1
    total = sum(n for _, n in per_finding.values())
    correct = sum(c for c, _ in per_finding.values())

    def score(c: int, n: int) -> dict:
        return {"accuracy": c / n if n else None, "n": n}

    return {
        "change_accuracy": correct / total if total else None,
        "n": total,
        "per_finding": {f: score(*v) for f, v in sorted(per_finding.items())},
        "per_change": {c: score(*v) for c, v in per_change.items()},
        "stated": stated,
    }
