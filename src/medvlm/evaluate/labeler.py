"""Offline clinical labeler: the 14 CheXpert observations from free-text chest X-ray reports.

`label_report(text)` returns {observation: "positive" | "negative" | "uncertain" | "not_mentioned"} for each
of `CHEXPERT_OBSERVATIONS`. The default backend is rule-based (our own phrase tables, informed by the CheXpert
labeler's mention lists and NegBio's negation/uncertainty patterns) and needs nothing but `re`:

1. Split the lower-cased report into sentences, each sentence into clauses at scope breakers
   ("but", "however", "although", "except", "which", ";", ", and there is", ...).
2. Find mentions per observation: *finding* phrases name the observation ("cardiomegaly", "effusion");
   *anatomy* phrases ("heart size", "cardiac silhouette", "mediastinum") only count together with a size
   qualifier in the same clause ("heart size is normal" -> negative, "the heart is enlarged" -> positive,
   "borderline heart size" -> uncertain, "stable cardiac silhouette" -> uncertain as in CheXpert).
3. Classify each mention from the nearest cue in its clause: pre-cues before it ("no", "without",
   "negative for", "possible", "may represent", "cannot exclude", ...) and post-cues after it ("is not seen",
   "has resolved", "cannot be excluded", ...). Negation scope crosses list commas ("No pneumothorax, effusion
   or consolidation" negates all three); "A or B" / "A versus B" between two findings makes both uncertain.
4. Aggregate per report as CheXpert does: positive > uncertain > negative > not_mentioned. "No Finding" is
   positive when no pathology (any observation but Support Devices and No Finding, plus a short list of other
   abnormalities such as emphysema or granuloma) is positive or uncertain, and "not_mentioned" otherwise.

See docs/labeler.md for the conventions and the measured agreement with IU X-ray MeSH tags.
"""

from __future__ import annotations

import bisect
import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

CHEXPERT_OBSERVATIONS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
CHEXPERT5: tuple[str, ...] = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
LABELS: tuple[str, ...] = ("positive", "negative", "uncertain", "not_mentioned")

# Observations whose positive/uncertain mention rules out "No Finding" (CheXpert: all but Support Devices).
PATHOLOGIES: tuple[str, ...] = tuple(o for o in CHEXPERT_OBSERVATIONS if o not in ("No Finding", "Support Devices"))

_RANK = {"not_mentioned": 0, "negative": 1, "uncertain": 2, "positive": 3}


def _split_top_level(source: str) -> list[str]:
    """Split a regex source at its top-level "|"."""
    parts, depth, current, i = [], 0, "", 0
    while i < len(source):
        char = source[i]
        if char == "\\":
            current += source[i : i + 2]
            i += 2
            continue
        depth += char == "("
        depth -= char == ")"
        if char == "|" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
        i += 1
    return parts + [current]


def _required_literal(alternative: str) -> str | None:
    """The longest run of plain characters every match of `alternative` contains, or None (3+ characters).

    Only characters outside groups count, and a character followed by a quantifier (?, *, +, {) is dropped.
    """
    runs, current, depth, i = [], "", 0, 0
    while i < len(alternative):
        char = alternative[i]
        if char == "\\":  # an escape (\b, \w, ...) ends the run
            runs.append(current)
            current = ""
            i += 2
            continue
        if char in "[{":  # a character class or a counted quantifier: skip it, it ends the run
            runs.append(current)
            current = ""
            i = alternative.index("]" if char == "[" else "}", i + 1) + 1
            continue
        if char in "()":
            runs.append(current)
            current = ""
            depth += 1 if char == "(" else -1
            if char == ")" and i + 1 < len(alternative) and alternative[i + 1] in "?*":
                i += 1  # the optional group was never part of a run
        elif depth == 0 and (char.isalnum() or char == " "):
            if i + 1 < len(alternative) and alternative[i + 1] in "?*+{":
                runs.append(current)
                current = ""
            else:
                current += char
        else:
            runs.append(current)
            current = ""
        i += 1
    runs.append(current)
    best = max(runs, key=len)
    return best if len(best.strip()) >= 3 else None


class Phrases:
    """A compiled alternation of phrases, each starting at a word boundary.

    A regex beginning with `\\b` scans every position of the text; most reports mention few observations, so
    each phrase's required literal (e.g. "effusion" for `effusions?\\b`) is first looked up with `in`, which
    is ~30x faster, and the regex runs only when one is present.
    """

    def __init__(self, *alternatives: str):
        self.pattern = re.compile("|".join(rf"\b(?:{a})" for a in alternatives))
        literals = [_required_literal(part) for a in alternatives for part in _split_top_level(a)]
        self.literals: tuple[str, ...] | None = None if None in literals else tuple(sorted(set(literals)))

    def _may_match(self, text: str) -> bool:
        return self.literals is None or any(literal in text for literal in self.literals)

    def finditer(self, text: str):
        return self.pattern.finditer(text) if self._may_match(text) else iter(())

    def search(self, text: str) -> re.Match | None:
        return self.pattern.search(text) if self._may_match(text) else None


_rx = Phrases


@dataclass(frozen=True)
class ObservationRules:
    """How one observation is mentioned: findings name it; hedged phrases name it at best uncertainly
    ("vascular congestion" for Edema, as in CheXpert); anatomy needs a size qualifier; exclude vetoes."""

    findings: Phrases | None = None
    hedged: Phrases | None = None
    anatomy: Phrases | None = None
    exclude: Phrases | None = None


# The phrase tables. Words are matched on lower-cased text; `\w*` endings cover plurals and inflections.
RULES: dict[str, ObservationRules] = {
    "Enlarged Cardiomediastinum": ObservationRules(
        findings=_rx(
            r"widen(?:ed|ing) (?:of (?:the )?)?(?:superior )?mediastin\w*",
            r"mediastinal (?:widening|enlargement)",
            r"enlarged cardiomediastin\w*",
        ),
        anatomy=_rx(
            r"cardiomediastinal (?:silhouettes?|contours?|structures?|size|shadow|width)",
            r"mediastinal (?:silhouettes?|contours?|structures?|width|configuration|shadow)",
            r"pericardial silhouette",
            r"mediastinum\b",
            r"cardiomediastinum\b",
        ),
    ),
    "Cardiomegaly": ObservationRules(
        findings=_rx(r"cardiomegal\w*", r"cardiac enlargement", r"enlarged heart"),
        anatomy=_rx(
            r"heart size",
            r"size of the heart",
            r"cardiac (?:size|silhouettes?|shadow|contours?|diameter|dimensions?)",
            r"cardiac(?= and mediastinal)",
            r"heart (?:silhouette|shadow|contours?)",
            r"heart\b(?! (?:failure|border|disease|valve))",
        ),
        exclude=_rx(
            r"(?:behind|overlying|over|through|projecting over|posterior to|beneath|below|obscuring) (?:the )?heart",
            r"(?:left |right )?heart borders?",
        ),
    ),
    "Lung Opacity": ObservationRules(
        findings=_rx(
            r"opaci\w*",
            r"air[- ]?space (?:disease|process|opacit\w*)",
            r"infiltrat\w*",
            r"increased density",
            r"decreased translucency",
            r"interstitial (?:markings?|patterns?|prominence|lung disease|opacit\w*|thickening)",
            r"reticular (?:patterns?|markings?|opacit\w*)",
            r"reticulation",
            r"reticulonodular",
            r"parenchymal scar\w*",
            r"peribronchial (?:thickening|cuffing)",
            r"(?:bronchial )?wall thickening",
            r"scar(?:s|ring|red)?\b",
        ),
        exclude=_rx(
            r"pleural scar\w*",
            r"pleuro-?parenchymal scar\w*",
            r"pleural[- ]parenchymal scar\w*",
            r"apical (?:pleural )?scar\w*",
        ),
    ),
    "Lung Lesion": ObservationRules(
        findings=_rx(
            r"mass(?:es)?\b",
            r"mass-?like",
            r"nodules?\b",
            r"nodular (?:densit\w*|opacit\w*|opacification|lesions?)",
            r"lump\b",
            r"cavitary lesions?",
            r"cavitation",
            r"(?:lung|pulmonary|parenchymal|spiculated) lesions?",
            r"carcinoma",
            r"neoplasm\w*",
            r"tumou?rs?\b",
        ),
        exclude=_rx(
            r"calcified (?:pulmonary |lung |granulomatous )?nodul\w*",
            r"massive",
            r"mass effect",
        ),
    ),
    "Edema": ObservationRules(
        findings=_rx(
            r"(?<!soft tissue )edema\w*",
            r"oedema",
            r"heart failure",
            r"chf\b",
            r"congestive",
            r"fluid overload",
            r"kerley",
        ),
        hedged=_rx(
            r"(?:vascular|venous|pulmonary) congestion",
            r"(?:pulmonary )?venous (?:hypertension|engorgement)",
            r"vascular (?:engorgement|prominence|indistinctness|redistribution)",
            r"indistinct(?:ness)?(?: of)?(?: the)? (?:pulmonary )?vascul\w*",
            r"prominen\w* (?:of )?(?:the )?(?:central )?(?:pulmonary )?vascul\w*",
        ),
    ),
    "Consolidation": ObservationRules(findings=_rx(r"consolidat\w*")),
    "Pneumonia": ObservationRules(
        findings=_rx(r"\w*pneumonia\w*", r"pneumonitis", r"infection", r"infectious"),
        exclude=_rx(r"granulomatous (?:infection|infectious)", r"(?:old|prior|previous|remote|healed) infection"),
    ),
    "Atelectasis": ObservationRules(
        findings=_rx(r"atelecta\w*", r"collapse[ds]?\b(?! vertebra)"),
        exclude=_rx(r"(?:vertebral|compression) collapse", r"collapse of (?:the )?(?:vertebra\w*|\w+ vertebral)"),
    ),
    "Pneumothorax": ObservationRules(findings=_rx(r"\w*pneumothora(?:x|ces|xes)", r"pleural air collection")),
    "Pleural Effusion": ObservationRules(
        findings=_rx(r"effusions?\b", r"pleural fluid", r"hydrothorax", r"hydropneumothora\w*"),
        exclude=_rx(r"pericardial effusions?", r"joint effusions?"),
    ),
    "Pleural Other": ObservationRules(
        findings=_rx(
            r"pleural (?:thickening|scar\w*|plaques?|calcification\w*|fibrosis)",
            r"pleuro-?parenchymal (?:scar\w*|thickening|changes?)",
            r"pleural[- ]parenchymal (?:scar\w*|thickening|changes?)",
            r"apical (?:pleural )?(?:scar\w*|thickening|cap\w*)",
            r"pleuro-?pericardial scar\w*",
            r"fibrothorax",
        ),
    ),
    "Fracture": ObservationRules(findings=_rx(r"fractur\w*")),
    "Support Devices": ObservationRules(
        findings=_rx(
            r"(?:endotracheal|et|tracheostomy|enteric|feeding|nasogastric|orogastric|ng|og|chest|dobhoff|gastric)"
            r" tubes?",
            r"tubes? (?:and|or) lines?",
            r"lines? (?:and|or) tubes?",
            r"tubes?\b(?! of)",
            r"(?:central|venous|picc|arterial|midline|port|dialysis|swan[- ]ganz|jugular|subclavian|femoral|ij)"
            r" (?:venous )?lines?",
            r"catheters?",
            r"picc\b",
            r"port-?a-?cath",
            r"mediport",
            r"pacemakers?",
            r"pacer\w*",
            r"pacing (?:leads?|wires?)",
            r"transvenous (?:leads?|wires?)",
            r"a?icd\b",
            r"defib\w*",
            r"(?:prosthetic|mechanical|bioprosthetic|replacement) (?:aortic |mitral )?valves?",
            r"valve (?:replacement|prosthesis)",
            r"stents?\b",
            r"(?:surgical |orthopedic |fixation )?hardware",
            r"plates?\b(?![- ]?like)",
            r"apparatus",
            r"equipment",
            r"screws?\b",
            r"arthroplast\w*",
            r"cannula\w*",
            r"drains?\b",
            r"(?:support|medical|implanted|monitoring) devices?",
            r"devices?\b",
            r"\w*stimulators?",
            r"generators?\b",
            # "right chest XXXX tip in the low SVC": a tip in a central position is a line or tube
            r"tips? (?:\S+ ){0,6}?(?:svc|superior vena cava|cavoatrial|caval|(?:right )?atri\w*|carina)\b",
            r"coils?\b",
            r"(?:ecg|ekg|monitoring|cardiac monitor) leads",
        ),
        exclude=_rx(r"bronchial tubes?", r"neural tube"),
    ),
}

# Other abnormalities (no CheXpert class of their own) that, positively mentioned, rule out "No Finding".
OTHER_ABNORMALITIES = _rx(
    r"emphysema\w*",
    r"hyperinflat\w*",
    r"hyperexpan\w*",
    r"copd\b",
    r"granulom\w*",
    r"calcified nodul\w*",
    r"scolios\w*",
    r"kyphos\w*",
    r"hernia\w*",
    r"eventration",
    r"elevat\w* (?:of the )?(?:left |right )?hemidiaphragm",
    r"(?:left |right )?hemidiaphragm is elevated",
    r"degenerat\w*",
    r"osteophyt\w*",
    r"spondylo\w*",
    r"atheroscler\w*",
    r"calcifi\w*",
    r"pneumomediastinum",
    r"pneumoperitoneum",
    r"bronchiectasis",
    r"bullae|bullous",
    r"cephalization",
    r"blunting",
    r"deformit\w*",
    r"metasta\w*",
    r"hemorrhage|haemorrhage|hematoma",
    r"osteopenia",
    r"volume loss",
    r"fibrosis",
    r"cardiac (?:enlargement )?borderline",
    r"low lung volumes?",
    r"hypoinflat\w*",
    r"hypoaerat\w*",
    r"tortu\w*",
    r"sternotomy",
    r"(?:surgical )?clips\b",
    r"post-?(?:surgical|operative)",
    r"prominen\w*",
)

# Size qualifiers that turn an anatomy mention into a label.
_QUALIFIER = re.compile(
    r"\b(?:(?P<normal>upper limits? (?:of )?normal|upper limits?|top[- ]normal|upper[- ]normal|high[- ]normal"
    r"|within normal (?:radiographic )?(?:size )?limits"
    r"|normal|unremarkable|not enlarged|not widened)"
    r"|(?P<uncertain>borderline|stable|unchanged|similar|grossly stable)"
    r"|(?P<abnormal>enlarge\w*|large|larger|increased|increase in size|widen\w*|wide|prominen\w*))\b"
)

_QUALIFIER_RANGE = re.compile(r"\s+(?:or|to|versus|vs\.?)\s+(?:(?:mildly|slightly|minimally|borderline|possibly|"
                               r"perhaps|questionably|very|mild|slight)\s+)?")

# Pseudo-cues: phrases that contain a cue word but do not negate or hedge what follows.
_PSEUDO = re.compile(
    r"\bno (?:significant |interval |substantial |appreciable )*(?:change|increase|decrease|worsening"
    r"|improvement|progression)\b|\bwithout (?:significant |interval )*change\b|\bnot (?:only|necessarily)\b"
    r"|\bgram[- ]negative\b|\bno longer\b(?= (?:enlarged|widened))|\bto suggest\b|\bto exclude\b"

)

# (pattern, label, maximum words between cue and mention). Uncertainty cues are matched first, so the
# "not" inside "cannot exclude" or "not excluded" never reads as a negation.
_PRE_UNCERTAIN = re.compile(
    r"\b(?:can ?not|could not|does not|cannot) (?:be )?(?:entirely |completely |totally |definitely )?"
    r"(?:exclude|rule out|excluded|ruled out)d?\b|\bnot (?:entirely |completely )?(?:be )?(?:excluded|ruled out)\b"
    r"|\bdifficult to (?:exclude|rule out)\b|\b(?:rule out|r/o|to exclude|question of|concern(?:ing)? for"
    r"|suspicious (?:for|of)|suspicion (?:for|of)|worrisome for|suggestive of|suggesting|suggests?|suspect(?:ed)?"
    r"|possib(?:le|ly|ility of)|probabl[ey]|(?:less |more |most )?likely|unlikely|questionabl[ey]|question"
    r"|may|might|could|would|differential(?: diagnosis)?(?: includes?)?|consider(?:ed)?|borderline|equivocal"
    r"|indeterminate|presum(?:ed|ably)|versus|vs\.?|or possibly|maybe|atypical|early"
    r"|(?<!no )(?<!without )(?<!evidence of )(?<!evidence for )developing"
    r"|correlat\w* (?:clinically )?for|clinical correlation|(?:evaluat|assess)\w* (?:for|of)|doubt(?:ful)?"
    r"|no convincing|can (?:reflect|represent|indicate|include|relate to))\b"
)
_PRE_NEGATION = re.compile(
    r"\b(?:no|without|negative for|free of|absence of|absent|resolution of|resolved|clear(?:ing|ed)? of"
    r"|removal of|removed|rather than|not|never|nor|neither|interval removal of|exclude[sd]?|ruled out"
    r"|disappearance of)\b"
)
_POST_UNCERTAIN = re.compile(
    r"\b(?:can ?not|could not|cannot) be (?:entirely |completely |totally |definitely )?(?:excluded|ruled out"
    r"|evaluated|assessed)\b|\bnot (?:entirely |completely )?(?:excluded|ruled out)\b|\bif (?:any|present)\b"
    r"|\b(?:is|are) (?:also )?(?:possible|questionable|suspected|questioned|likely|probable|a consideration|considered)\b"
    r"|\b(?:may|might|could) be present\b|\bversus\b|\bvs\b|\bis difficult to exclude\b"
    r"|\bnot (?:well |clearly )?(?:visualized|evaluated|assessed)\b"
)
_POST_NEGATION = re.compile(
    r"\b(?:(?:is|are|was|were|has been|have been) )?(?:not|no longer) (?:definitely |clearly |convincingly )?"
    r"(?:seen|identified|present|visualized|visible|demonstrated|evident|appreciated|noted|detected|apparent"
    r"|observed)\b|\b(?:is|are|has|have|has since|have since|has now|have now)? ?(?:been )?(?:resolved|removed"
    r"|cleared)\b|\babsent\b|\b(?:is|are|appears?|remains?) (?:normal|unremarkable)\b"
    r"|\bwithin (?:the )?(?:limits of normal|normal (?:radiographic )?(?:size )?limits)\b|\bremoval\b(?! of)"
)
_PRE_LIMIT_WORDS = 15
_PRE_NOT_LIMIT_WORDS = 3  # "not" is a short-range cue: "not enlarged", "not seen"
_POST_LIMIT_WORDS = 8

# Scope breakers: a clause ends where one of these starts.
_CLAUSE_BREAK = re.compile(
    r";|:|\b(?:but|however|although|though|except|whereas|while|yet|which|otherwise|apart from|aside from"
    r"|other than|nevertheless)\b|(?:,\s*|\band\s+)(?=(?:the|there|this|it|these|he|she)\b)"
    r"|\bthere (?:is|are|has been|have been|was|were)\b"
)
_SENTENCE_BREAK = re.compile(r"[.!?](?:\s+|$)|\n+|\s-\s|\b\d\.\s")
_ALTERNATIVE = re.compile(r"\s*,?\s*(?:or|versus|vs\.?|and/or)\s+(?:\S+\s+){0,3}$")
_WORD = re.compile(r"[\w/]+")
_LIST_TAIL = re.compile(r"\b(?:or|and|nor)\b")


@dataclass(frozen=True)
class _Mention:
    observation: str
    start: int
    end: int
    base: str  # "positive" for findings, the qualifier's reading for anatomy


def _word_starts(text: str) -> list[int]:
    return [m.start() for m in _WORD.finditer(text)]


def _words_between(word_starts: list[int], start: int, end: int) -> int:
    """How many words begin in text[start:end] (`word_starts` from `_word_starts(text)`)."""
    return bisect.bisect_left(word_starts, end) - bisect.bisect_left(word_starts, start)


def _spans(pattern: re.Pattern | Phrases, text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in pattern.finditer(text)]


def _overlaps(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    return any(s < end and start < e for s, e in spans)


def _find_cues(text: str) -> list[tuple[int, int, str, str]]:
    """All cues in the text: (start, end, "pre"|"post", "negative"|"uncertain"), pseudo-cues removed."""
    taken = _spans(_PSEUDO, text)
    cues: list[tuple[int, int, str, str]] = []
    for pattern, where, label in (
        (_POST_UNCERTAIN, "post", "uncertain"),
        (_PRE_UNCERTAIN, "pre", "uncertain"),
        (_POST_NEGATION, "post", "negative"),
        (_PRE_NEGATION, "pre", "negative"),
    ):
        for m in pattern.finditer(text):
            span = (m.start(), m.end())
            if span[0] == span[1]:
                continue
            if _overlaps(*span, taken):
                # A bare word that is both a post- and a pre-cue ("resolved", "absent", "versus") acts both ways:
                # "The pneumothorax has resolved." and "Resolved right pneumothorax." are both negative.
                if not (where == "pre" and (span[0], span[1], "post", label) in cues):
                    continue
            cues.append((span[0], span[1], where, label))
            taken.append(span)
    return cues


def _clause_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each clause: sentences split at scope breakers."""
    breaks = iter([m.start() for m in _CLAUSE_BREAK.finditer(text)] + [len(text) + 1])
    next_break = next(breaks)
    spans: list[tuple[int, int]] = []
    start = 0
    for end, next_start in [(m.start(), m.end()) for m in _SENTENCE_BREAK.finditer(text)] + [(len(text), 0)]:
        if end > start and not text[start:end].isspace():
            cuts = [start]
            while next_break < end:
                if next_break > start:
                    cuts.append(next_break)
                next_break = next(breaks)
            spans += [(a, b) for a, b in zip(cuts, cuts[1:] + [end], strict=True) if b > a]
        start = next_start
    return spans


def _anatomy_mention(observation: str, start: int, end: int, text: str, words: list[int], qualifiers) -> _Mention | None:
    """The anatomy phrase at [start, end) read with the nearest size qualifier of its clause, if any."""
    best = None  # (word gap, start, end, kind)
    for qs, qe, kind in qualifiers:
        if qs >= end:
            gap = _words_between(words, end, qs)
            if gap <= 10 and (best is None or gap < best[0]):
                best = (gap, qs, qe, kind)
        elif qe <= start:
            gap = _words_between(words, qe, start)
            if gap <= 4 and (best is None or gap < best[0]):
                best = (gap, qs, qe, kind)
    if best is None:
        return None
    _, qs, qe, kind = best
    base = {"normal": "negative", "uncertain": "uncertain", "abnormal": "positive"}[kind]
    # "upper limits of normal or mildly enlarged", "normal to borderline enlarged": a range is uncertain
    for os_, oe, other in qualifiers:
        if other != kind and (_QUALIFIER_RANGE.fullmatch(text, qe, os_) or _QUALIFIER_RANGE.fullmatch(text, oe, qs)):
            base = "uncertain"
    return _Mention(observation, min(start, qs), max(end, qe), base)


def _classify(mention: _Mention, text: str, words: list[int], cues: list[tuple[int, int, str, str]]) -> str:
    """The mention's label from the nearest pre- and post-cue of its clause (`cues`)."""
    if mention.base == "negative":
        return "negative"
    if mention.base == "positive" and any(
        mention.start <= c[0] and c[1] <= mention.end and c[3] == "negative" for c in cues
    ):
        return "negative"  # "heart is not enlarged"
    pre = None
    post = None
    for start, end, where, label in cues:
        if where == "pre" and end <= mention.start:
            gap = _words_between(words, end, mention.start)
            limit = _PRE_NOT_LIMIT_WORDS if text[start:end] == "not" else _PRE_LIMIT_WORDS
            if gap <= limit and (pre is None or end > pre[0]):
                pre = (end, label)
        elif where == "post" and start >= mention.end:
            if _words_between(words, mention.end, start) > _POST_LIMIT_WORDS:
                continue
            between = text[mention.end : start]
            if "," in between and not _LIST_TAIL.search(between.rsplit(",", 1)[-1]):
                continue  # a comma ends a post-cue's reach unless it is a list "A, B, or C is not seen"
            if post is None or start < post[0]:
                post = (start, label)
    labels = {x[1] for x in (pre, post) if x is not None}
    if "uncertain" in labels or mention.base == "uncertain":
        return "negative" if labels == {"negative"} else "uncertain"
    if "negative" in labels:
        return "negative"
    return "positive"


def label_report(text: str) -> dict[str, str]:
    """Label one report: {observation: "positive"|"negative"|"uncertain"|"not_mentioned"} in canonical order."""
    if not isinstance(text, str):
        raise TypeError(f"label_report takes the report text as a str, got {type(text).__name__}")
    found = dict.fromkeys(CHEXPERT_OBSERVATIONS, "not_mentioned")
    text = text.lower()
    # Each pattern runs once over the whole report; matches are then assigned to clauses by offset.
    hits = []  # (observation, kind, start, end)
    for observation, rules in RULES.items():
        for kind, pattern in (("positive", rules.findings), ("uncertain", rules.hedged), ("anatomy", rules.anatomy)):
            if pattern is not None:
                hits += [(observation, kind, m.start(), m.end()) for m in pattern.finditer(text)]
    others = _spans(OTHER_ABNORMALITIES, text)
    if not hits and not others:
        found["No Finding"] = "positive"
        return found

    clauses = _clause_spans(text)
    words = _word_starts(text)
    clause_starts = [s for s, _ in clauses]

    def clause_of(start: int, end: int) -> int:
        i = bisect.bisect_right(clause_starts, start) - 1
        return i if i >= 0 and end <= clauses[i][1] else -1

    def by_clause(items) -> dict[int, list]:
        grouped: dict[int, list] = {}
        for item in items:
            i = clause_of(item[0], item[1])
            if i >= 0:
                grouped.setdefault(i, []).append(item)
        return grouped

    qualifiers = by_clause((m.start(), m.end(), m.lastgroup) for m in _QUALIFIER.finditer(text)) if any(
        h[1] == "anatomy" for h in hits) else {}
    excluded = {o: _spans(RULES[o].exclude, text) for o in {h[0] for h in hits} if RULES[o].exclude is not None}
    mentions: dict[int, list[_Mention]] = {}
    for observation, kind, start, end in hits:
        i = clause_of(start, end)
        if i < 0:
            continue
        if kind == "anatomy":
            mention = _anatomy_mention(observation, start, end, text, words, qualifiers.get(i, ()))
        else:
            mention = _Mention(observation, start, end, kind)
        if mention is not None and not _overlaps(mention.start, mention.end, excluded.get(observation, ())):
            mentions.setdefault(i, []).append(mention)

    cues = by_clause(_find_cues(text)) if mentions or others else {}
    for i, clause_mentions in mentions.items():
        clause_mentions.sort(key=lambda x: x.start)
        for j, mention in enumerate(clause_mentions):
            label = _classify(mention, text, words, cues.get(i, []))
            if label == "positive":
                # "atelectasis or pneumonia", "edema versus infection": alternatives are uncertain.
                for k in (j - 1, j + 1):
                    if 0 <= k < len(clause_mentions) and clause_mentions[k].observation != mention.observation:
                        a, b = sorted((mention, clause_mentions[k]), key=lambda x: x.start)
                        if a.end <= b.start and _ALTERNATIVE.match(text, a.end, b.start):
                            label = "uncertain"
            if _RANK[label] > _RANK[found[mention.observation]]:
                found[mention.observation] = label
    other_abnormality = any(
        _classify(_Mention("other", s, e, "positive"), text, words, cues.get(clause_of(s, e), [])) != "negative"
        for s, e in others
        if clause_of(s, e) >= 0
    )
    pathology = any(found[o] in ("positive", "uncertain") for o in PATHOLOGIES)
    found["No Finding"] = "not_mentioned" if pathology or other_abnormality else "positive"
    return found


def label_reports(texts: Sequence[str]) -> list[dict[str, str]]:
    """Label many reports with the rule-based labeler (thousands per second on one core)."""
    return [label_report(t) for t in texts]


class LabelerBackend(Protocol):
    """Anything that turns report texts into CheXpert label dicts (one dict per text, canonical keys)."""

    def label(self, texts: Sequence[str]) -> list[dict[str, str]]: ...


class RuleLabeler:
    """The offline rule-based labeler as a backend."""

    name = "rules"

    def label(self, texts: Sequence[str]) -> list[dict[str, str]]:
        return label_reports(texts)


def build_labeler(backend: str = "rules", weights: str | Path | None = None, **options) -> LabelerBackend:
    """The labeler named `backend` ("rules", "chexbert", "radgraph"); model backends need local `weights`."""
    if backend == "rules":
        if weights is not None or options:
            raise ValueError("the rules backend takes no weights or options; use --backend chexbert for a model")
        return RuleLabeler()
    if backend == "chexbert":
        if weights is None:
            raise ValueError("the chexbert backend needs --weights PATH (a local CheXbert checkpoint, chexbert.pth)")
        return CheXbertLabeler(weights, **options)
    if backend == "radgraph":
        raise NotImplementedError(
            "the radgraph backend is not available yet: use --backend rules (offline) or --backend chexbert "
            "--weights chexbert.pth"
        )
    raise ValueError(f"unknown labeler backend {backend!r}; choose one of: rules, chexbert, radgraph")


# --- CheXbert backend (a user's local checkpoint; nothing is downloaded) ----------------------------------

# CheXbert's head order and class ids (stanfordmlgroup/CheXbert src/constants.py): 13 heads with
# 0 blank, 1 positive, 2 negative, 3 uncertain, then a 2-class "No Finding" head (0 blank, 1 positive).
CHEXBERT_CONDITIONS: tuple[str, ...] = (*CHEXPERT_OBSERVATIONS[1:], "No Finding")
_CHEXBERT_CLASSES = ("not_mentioned", "positive", "negative", "uncertain")


def _bert_config_from_state(state: dict, num_attention_heads: int | None = None):
    """A BertConfig whose sizes match the encoder weights in `state` (keys start with "bert.")."""
    from transformers import BertConfig

    word = state["bert.embeddings.word_embeddings.weight"]
    layers = {int(k.split(".")[3]) for k in state if k.startswith("bert.encoder.layer.")}
    hidden = word.shape[1]
    return BertConfig(
        vocab_size=word.shape[0],
        hidden_size=hidden,
        num_hidden_layers=len(layers),
        num_attention_heads=num_attention_heads or max(1, hidden // 64),
        intermediate_size=state["bert.encoder.layer.0.intermediate.dense.weight"].shape[0],
        max_position_embeddings=state["bert.embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=state["bert.embeddings.token_type_embeddings.weight"].shape[0],
    )


def _modern_key(key: str) -> str:
    """Old BERT checkpoints name LayerNorm parameters gamma / beta; transformers names them weight / bias."""
    for old, new in ((".LayerNorm.gamma", ".LayerNorm.weight"), (".LayerNorm.beta", ".LayerNorm.bias")):
        if key.endswith(old):
            return key[: -len(old)] + new
    return key


class CheXbertLabeler:
    """CheXbert (Smit et al. 2020) from a local checkpoint: a BERT encoder and 14 linear heads on [CLS].

    `weights`: the CheXbert `.pth` file; its state dict sits under "model_state_dict" with "module." prefixes
    (DataParallel), loaded with `torch.load(weights_only=True)`. `tokenizer`: a folder or `vocab.txt` of the
    bert-base-uncased WordPiece vocabulary; default: `vocab.txt` beside the weights. Reports are cut at 512
    tokens as in CheXbert. The encoder's sizes are read from the weights; `num_attention_heads` defaults to
    hidden_size / 64 (12 for bert-base).
    """

    name = "chexbert"

    def __init__(
        self,
        weights: str | Path,
        tokenizer: str | Path | None = None,
        device: str = "cpu",
        batch_size: int = 16,
        num_attention_heads: int | None = None,
    ):
        weights = Path(weights)
        if not weights.is_file():
            raise FileNotFoundError(f"CheXbert weights not found: {weights} (pass --weights PATH to chexbert.pth)")
        import torch
        from torch import nn
        from transformers import BertModel, BertTokenizer

        checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
        state = checkpoint.get("model_state_dict", checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict) or "module.bert.embeddings.word_embeddings.weight" not in state and (
            "bert.embeddings.word_embeddings.weight" not in state
        ):
            raise ValueError(f"{weights}: not a CheXbert checkpoint (expected a state dict under 'model_state_dict' "
                             "with bert.* encoder and linear_heads.* weights)")
        state = {_modern_key(k.removeprefix("module.")): v for k, v in state.items()
                 if not k.endswith((".position_ids", ".token_type_ids"))}  # buffers some versions saved

        tokenizer_path = Path(tokenizer) if tokenizer is not None else weights.parent / "vocab.txt"
        if tokenizer_path.is_dir():
            self.tokenizer = BertTokenizer.from_pretrained(str(tokenizer_path))
        elif tokenizer_path.is_file():
            self.tokenizer = BertTokenizer(vocab=str(tokenizer_path), do_lower_case=True)
        else:
            raise FileNotFoundError(f"no tokenizer at {tokenizer_path}: pass a folder or vocab.txt with the "
                                    "bert-base-uncased vocabulary (CLI: --tokenizer PATH)")

        config = _bert_config_from_state(state, num_attention_heads)
        model = nn.Module()
        model.bert = BertModel(config, add_pooling_layer="bert.pooler.dense.weight" in state)
        n_heads = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("linear_heads."))
        if n_heads != len(CHEXBERT_CONDITIONS):
            raise ValueError(f"{weights}: {n_heads} linear heads, CheXbert has {len(CHEXBERT_CONDITIONS)}")
        model.linear_heads = nn.ModuleList(
            nn.Linear(config.hidden_size, state[f"linear_heads.{i}.weight"].shape[0]) for i in range(n_heads)
        )
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"{weights}: weights do not fit CheXbert (missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]})")
        self.model = model.to(device).eval()
        self.device = device
        self.batch_size = batch_size

    def label(self, texts: Sequence[str]) -> list[dict[str, str]]:
        import torch

        rows: list[dict[str, str]] = []
        for i in range(0, len(texts), self.batch_size):
            batch = [" ".join(t.split()) for t in texts[i : i + self.batch_size]]
            encoded = self.tokenizer(batch, padding=True, truncation=True, max_length=512, return_tensors="pt")
            with torch.no_grad():
                hidden = self.model.bert(
                    input_ids=encoded["input_ids"].to(self.device),
                    attention_mask=encoded["attention_mask"].to(self.device),
                ).last_hidden_state[:, 0]  # (batch, hidden): the [CLS] vector
                classes = torch.stack([head(hidden).argmax(dim=1) for head in self.model.linear_heads], dim=1)
            for row in classes.tolist():
                by_name = {obs: _CHEXBERT_CLASSES[c] for obs, c in zip(CHEXBERT_CONDITIONS, row, strict=True)}
                rows.append({obs: by_name[obs] for obs in CHEXPERT_OBSERVATIONS})
        return rows


# --- reading report files (used by `medvlm label`) ---------------------------------------------------------


@dataclass(frozen=True)
class Report:
    id: str
    text: str


_ID_FIELDS = ("id", "question_id", "study_id", "image_id", "uid")


def _json_records(path: Path) -> list[tuple[str, object]]:
    """(where, record) from a JSON array file or a JSONL file; `where` is "record N" or "line N"."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            return [(f"record {i}", record) for i, record in enumerate(json.loads(text), 1)]
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); write a JSON array or JSONL") from e
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append((f"line {lineno}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {lineno} is not valid JSON ({e.msg}); write one object a line") from e
    return records


def read_reports(path: str | Path, field: str = "text") -> list[Report]:
    """Reports from a .jsonl (one object a line) or .json (an array of objects) with the text in `field`, a .csv
    (column `field`) or a .txt (one report a line).

    Ids come from an "id" / "question_id" / "study_id" / "image_id" / "uid" field when present, else the
    1-based line (record) number. Raises ValueError naming the file, line and field on bad input.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    reports: list[Report] = []
    if suffix in (".jsonl", ".json"):
        records = _json_records(path)
        for where, record in records:
            if not isinstance(record, dict) or field not in record:
                keys = sorted(record) if isinstance(record, dict) else type(record).__name__
                raise ValueError(f"{path}: {where} has no field {field!r} (found {keys}); pass --field NAME")
            if not isinstance(record[field], str):
                raise ValueError(f"{path}: {where} field {field!r} is not a string")
            rid = next((record[k] for k in _ID_FIELDS if k in record), where.split()[-1])
            reports.append(Report(str(rid), record[field]))
    elif suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or field not in reader.fieldnames:
                raise ValueError(f"{path}: no column {field!r} (columns: {reader.fieldnames}); pass --field NAME")
            for rowno, row in enumerate(reader, 2):
                rid = next((row[k] for k in _ID_FIELDS if row.get(k)), rowno)
                reports.append(Report(str(rid), row[field] or ""))
    elif suffix == ".txt":
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                reports.append(Report(str(lineno), line.rstrip("\n")))
    else:
        raise ValueError(f"{path}: unknown report file type {suffix!r}; use .jsonl, .csv or .txt (one report a line)")
    return reports


def prevalence(labels: Sequence[dict[str, str]]) -> dict[str, dict[str, int]]:
    """Counts per observation and label: {observation: {"positive": n, "negative": n, ...}}."""
    counts = {o: dict.fromkeys(LABELS, 0) for o in CHEXPERT_OBSERVATIONS}
    for row in labels:
        for o in CHEXPERT_OBSERVATIONS:
            counts[o][row[o]] += 1
    return counts


def label_file(
    path: str | Path,
    out: str | Path,
    field: str = "text",
    backend: str = "rules",
    weights: str | Path | None = None,
    tokenizer: str | Path | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> dict[str, dict[str, int]]:
    """Label every report in `path` and write `out` as JSONL {"id", "chexpert": {obs: label}}; return prevalence.

    `weights` / `tokenizer` are for model backends (chexbert). `progress` shows a tqdm bar.
    """
    from tqdm import tqdm

    from medvlm.fileio import atomic_write_jsonl

    reports = read_reports(path, field)
    labeler = build_labeler(backend, weights, **({"tokenizer": tokenizer} if tokenizer is not None else {}))
    labels: list[dict[str, str]] = []
    with tqdm(total=len(reports), desc="labelling", unit="report", disable=not progress) as bar:
        for i in range(0, len(reports), batch_size):
            batch = reports[i : i + batch_size]
            labels += labeler.label([r.text for r in batch])
            bar.update(len(batch))
    atomic_write_jsonl(out, ({"id": r.id, "chexpert": lab} for r, lab in zip(reports, labels, strict=True)))
    return prevalence(labels)
