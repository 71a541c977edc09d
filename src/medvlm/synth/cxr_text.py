"""Reports, questions and CheXpert labels for synthetic chest radiographs.

Report: "FINDINGS: <sentences>\\nIMPRESSION: <sentences>". Sentences come from several templates and synonyms; some
absent findings get an explicit negative ("No pneumothorax."). Style "structured" (the default) orders the
findings sentences as a radiologist's systematic read does: lines and tubes, lungs (consolidation or opacity,
edema, atelectasis, nodule), pleura (effusion, pneumothorax), heart and mediastinum, bones; style "free" shuffles
them. Temporal studies with a
prior start with a comparison remark and describe each finding's change ("The left pleural effusion has
increased since the prior study."); temporal studies without a prior say that no comparison is available.

CheXpert labels (`chexpert` in labels.jsonl) say what the REPORT TEXT STATES, one value per observation among
"positive", "negative", "uncertain", "not_mentioned". Convention (one sentence speaks of one observation):
  cardiomegaly -> Cardiomegaly; pleural_effusion -> Pleural Effusion; pneumothorax -> Pneumothorax;
  consolidation worded "consolidation" -> Consolidation, worded "opacity" -> Lung Opacity;
  nodule / mass -> Lung Lesion; edema -> Edema; atelectasis -> Atelectasis;
  endotracheal tube, enteric tube, central line -> Support Devices.
  Present findings (new, increased, decreased, unchanged included) are "positive".
  "..., which may represent pneumonia." after a consolidation -> Pneumonia "uncertain" (the only uncertain form).
  Explicit negatives are "negative": "Heart size is normal." (Cardiomegaly), "The cardiomediastinal silhouette is
  normal." (Enlarged Cardiomediastinum), "No pleural effusion.", "No pneumothorax.", "No focal consolidation."
  (Consolidation), "No focal airspace opacity." (Lung Opacity), "No pulmonary nodules or masses." (Lung Lesion),
  "No pulmonary edema.", "No atelectasis.", "No acute displaced rib fracture." (Fracture), and the synonyms below.
  A finding present on the prior and gone now ("The previously seen right pneumothorax has resolved.", "The
  endotracheal tube has been removed.") is "negative", unless another sentence makes the observation positive.
  Several sentences on one observation combine as positive > uncertain > negative.
  No Finding is "positive" when no observation other than Support Devices is positive or uncertain (the
  impression then says "No acute cardiopulmonary process." or a synonym), otherwise "not_mentioned".
  Pleural Other is never mentioned.
`present` is the image truth under the same mapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medvlm.synth.base import SynthQuestion

OBSERVATIONS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
                "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
                "Fracture", "Support Devices")
LABEL_VALUES = ("positive", "negative", "uncertain", "not_mentioned")
_PRIORITY = {"positive": 3, "uncertain": 2, "negative": 1, "not_mentioned": 0}

# Words a report uses for each change label (the tests check every change label appears with one of them).
CHANGE_WORDS = {
    "new": ("new",),
    "resolved": ("resolved", "removed", "removal", "cleared"),
    "increased": ("increased", "increase", "larger", "worsened"),
    "decreased": ("decreased", "decrease", "smaller", "improved"),
    "unchanged": ("unchanged", "stable", "no change"),
}

DEVICE_NAMES = {"ett": "endotracheal tube", "enteric_tube": "enteric tube", "central_line": "central venous catheter"}


def observation(name: str, attrs: dict[str, Any]) -> str:
    """The CheXpert observation a finding maps to."""
    if name == "consolidation":
        return "Consolidation" if attrs.get("term") == "consolidation" else "Lung Opacity"
    return {"cardiomegaly": "Cardiomegaly", "pleural_effusion": "Pleural Effusion", "pneumothorax": "Pneumothorax",
            "nodule": "Lung Lesion", "edema": "Edema", "atelectasis": "Atelectasis", "ett": "Support Devices",
            "enteric_tube": "Support Devices", "central_line": "Support Devices"}[name]


def observations_present(findings: dict[str, dict[str, Any]]) -> dict[str, bool]:
    """Image truth: observation -> present, under the module's mapping."""
    present = dict.fromkeys(OBSERVATIONS, False)
    for name, attrs in findings.items():
        present[observation(name, attrs)] = True
    present["No Finding"] = not any(v for k, v in present.items() if k not in ("Support Devices", "No Finding"))
    return present


@dataclass
class CXRText:
    report: str
    chexpert: dict[str, str]
    questions: list[SynthQuestion]
    prompt: str


def _pick(rng: np.random.Generator, options: list[str] | tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def noun_phrase(name: str, a: dict[str, Any], with_level: bool = True) -> str:
    """e.g. "small left pleural effusion", "moderate cardiomegaly", "24 mm nodule in the right upper zone"."""
    level = lambda word: f"{word} " if with_level else ""  # noqa: E731
    if name == "cardiomegaly":
        return f"{level(a['severity'])}cardiomegaly"
    if name == "pleural_effusion":
        if a["side"] == "bilateral":
            return f"{level(a['size'])}bilateral pleural effusions"
        return f"{level(a['size'])}{a['side']} pleural effusion"
    if name == "pneumothorax":
        return f"{level(a['size'])}{a['side']} pneumothorax"
    if name == "consolidation":
        return f"{level(a['extent'])}{a['lobe']} {'consolidation' if a['term'] == 'consolidation' else 'opacity'}"
    if name == "nodule":
        size = f"{a['size_mm']} mm " if with_level else ""
        return f"{size}{a['type']} in the {a['zone']}"
    if name == "edema":
        return f"{level(a['severity'])}pulmonary edema"
    if name == "atelectasis":
        where = "bibasilar" if a["side"] == "bilateral" else f"{a['side']} basilar"
        return f"{level(a['severity'])}{where} atelectasis"
    if name == "central_line":
        return f"{a['side']} {a['vein']} central venous catheter"
    return DEVICE_NAMES[name]


def _the(name: str, a: dict[str, Any]) -> str:
    """Definite noun phrase without the level: "the left pleural effusion"."""
    phrase = noun_phrase(name, a, with_level=False)
    return phrase if name in ("cardiomegaly", "edema", "atelectasis") else f"the {phrase}"


def _present_sentence(rng: np.random.Generator, name: str, a: dict[str, Any]) -> str:
    np_ = noun_phrase(name, a)
    if name == "cardiomegaly":
        adverb = {"mild": "mildly", "moderate": "moderately", "severe": "severely"}[a["severity"]]
        return _pick(rng, [f"{_cap(np_)}.", f"There is {np_}.",
                           f"The cardiac silhouette is {adverb} enlarged, consistent with cardiomegaly."])
    if name == "pleural_effusion":
        if a["side"] == "bilateral":
            return _pick(rng, [f"{_cap(np_)}.", f"There are {np_}.",
                               f"{_cap(a['size'])} pleural effusions are present bilaterally."])
        return _pick(rng, [f"{_cap(np_)}.", f"There is a {np_}.",
                           f"A {a['size']} pleural effusion is present on the {a['side']}."])
    if name == "pneumothorax":
        return _pick(rng, [f"{_cap(np_)}.", f"There is a {np_}.", f"A {a['size']} pneumothorax is seen on the {a['side']}.",
                           f"{_cap(a['size'])} {a['side']}-sided pneumothorax."])
    if name == "consolidation":
        if a["term"] == "consolidation":
            return _pick(rng, [f"There is {a['extent']} consolidation in the {a['lobe']}.", f"{_cap(np_)}."])
        return _pick(rng, [f"There is {a['extent']} airspace opacity in the {a['lobe']}.",
                           f"{_cap(a['extent'])} opacity projects over the {a['lobe']}."])
    if name == "nodule":
        return _pick(rng, [f"There is a {np_}.", f"A {a['size_mm']} mm {a['type']} is noted in the {a['zone']}.",
                           f"{_cap(a['zone'])} {a['type']} measuring {a['size_mm']} mm."])
    if name == "edema":
        return _pick(rng, [f"{_cap(np_)}.", f"There is {np_}.", f"Findings are consistent with {np_}."])
    if name == "atelectasis":
        if a["side"] == "bilateral":
            return _pick(rng, [f"{_cap(np_)}.", f"There is {a['severity']} atelectasis at both lung bases."])
        return _pick(rng, [f"{_cap(np_)}.", f"There is {a['severity']} atelectasis at the {a['side']} lung base."])
    if name == "ett":
        cm = a["tip_to_carina_cm"]
        if a["position"] == "low":
            return _pick(rng, [f"The endotracheal tube tip is low, {cm} cm above the carina.",
                               f"Low-lying endotracheal tube with the tip {cm} cm above the carina."])
        return _pick(rng, [f"Endotracheal tube tip is {cm} cm above the carina.",
                           f"An endotracheal tube is in place with its tip {cm} cm above the carina."])
    if name == "enteric_tube":
        return _pick(rng, ["An enteric tube courses below the diaphragm with its tip in the stomach.",
                           "Enteric tube tip projects over the stomach.",
                           "The enteric tube terminates in the stomach."])
    tip = "the superior vena cava" if a["tip"] == "SVC" else f"the {a['tip']}"
    return _pick(rng, [f"{_cap(np_)} with the tip in {tip}.",
                       f"A {a['side']} {a['vein']} central line terminates in {tip}."])


_NEGATIVES: dict[str, tuple[str, tuple[str, ...]]] = {
    "cardiomegaly": ("Cardiomegaly", ("Heart size is normal.", "The heart is normal in size.", "No cardiomegaly.")),
    "pleural_effusion": ("Pleural Effusion", ("No pleural effusion.", "There is no pleural effusion.",
                                              "No pleural effusions are seen.")),
    "pneumothorax": ("Pneumothorax", ("No pneumothorax.", "There is no pneumothorax.", "No pneumothorax is seen.")),
    "consolidation": ("Consolidation", ("No focal consolidation.", "There is no focal consolidation.")),
    "opacity": ("Lung Opacity", ("No focal airspace opacity.", "There is no focal airspace opacity.")),
    "nodule": ("Lung Lesion", ("No pulmonary nodules or masses.", "No suspicious pulmonary nodule or mass.")),
    "edema": ("Edema", ("No pulmonary edema.", "There is no pulmonary edema.")),
    "atelectasis": ("Atelectasis", ("No atelectasis.", "There is no atelectasis.")),
    "mediastinum": ("Enlarged Cardiomediastinum", ("The cardiomediastinal silhouette is normal.",
                                                   "Normal cardiomediastinal silhouette.")),
    "fracture": ("Fracture", ("No acute displaced rib fracture.", "No displaced fracture is seen.")),
}


def _change_sentence(rng: np.random.Generator, name: str, change: str, cur: dict | None, prior: dict | None) -> str:
    if change == "new":
        return _pick(rng, [f"There is a new {noun_phrase(name, cur)}.", f"New {noun_phrase(name, cur)} since the prior study."]
                     if name not in ("cardiomegaly", "edema", "atelectasis")
                     else [f"New {noun_phrase(name, cur)} since the prior study.",
                           f"There is new {noun_phrase(name, cur)} compared with the prior study."])
    if change == "resolved":
        if name in DEVICE_NAMES:
            return _pick(rng, [f"The {noun_phrase(name, prior)} has been removed.",
                               f"Interval removal of the {noun_phrase(name, prior)}."])
        what = _the(name, prior)
        what = what[4:] if what.startswith("the ") else what
        return _pick(rng, [f"The previously seen {what} has resolved.", f"Previously seen {what} has cleared."])
    the = _cap(_the(name, cur))
    if change == "unchanged":
        if name in DEVICE_NAMES:
            return _present_sentence(rng, name, cur)[:-1] + _pick(rng, [", unchanged in position.",
                                                                       ", stable in position."])
        return _pick(rng, [f"Unchanged {noun_phrase(name, cur)}.", f"Stable {noun_phrase(name, cur)} compared with the prior study.",
                           f"{the} is unchanged since the prior study."])
    level_key = "size_mm" if name == "nodule" else {"cardiomegaly": "severity", "pleural_effusion": "size",
                                                    "pneumothorax": "size", "consolidation": "extent",
                                                    "edema": "severity", "atelectasis": "severity"}[name]
    now = f"{cur[level_key]} mm" if name == "nodule" else cur[level_key]
    before = f"{prior[level_key]} mm" if name == "nodule" else prior[level_key]
    verb = change  # "increased" | "decreased"
    comparative = "larger" if change == "increased" else "smaller"
    return _pick(rng, [f"{the} has {verb} since the prior study and is now {now}.",
                       f"{the} has {verb}, from {before} to {now}.",
                       f"{the} is {comparative} than on the prior study, now {now}." if name != "edema"
                       else f"{the} has {verb} since the prior study, now {now}."])


REPORT_PROMPTS = (
    "Describe the findings of the chest X-ray.",
    "Write the findings and impression for this chest radiograph.",
    "Provide a radiology report for this chest X-ray.",
    "What are the findings in this frontal chest radiograph?",
    "Generate a report for this chest X-ray image.",
    "Please describe this chest X-ray in the style of a radiology report.",
)
TEMPORAL_PROMPTS = (
    "Describe the findings of the current chest X-ray compared with the prior study.",
    "Write a report for the current chest radiograph, comparing it with the prior image.",
    "Provide a radiology report for the current chest X-ray, noting any interval change from the prior.",
    "What has changed between the prior and the current chest X-ray? Write the report.",
)

_CLOSED = {
    "cardiomegaly": ("Is there cardiomegaly?", "Is the heart enlarged?"),
    "pleural_effusion": ("Is there a pleural effusion?", "Is pleural fluid present?"),
    "pneumothorax": ("Is there a pneumothorax?", "Is a pneumothorax present?"),
    "consolidation": ("Is there a consolidation or airspace opacity?", "Is there a focal lung opacity?"),
    "nodule": ("Is there a lung nodule or mass?", "Is a pulmonary nodule or mass visible?"),
    "edema": ("Is there pulmonary edema?", "Does the image show pulmonary edema?"),
    "atelectasis": ("Is there atelectasis?", "Is any atelectasis present?"),
    "ett": ("Is an endotracheal tube present?", "Is the patient intubated?"),
    "enteric_tube": ("Is there an enteric tube?", "Is a feeding or nasogastric tube present?"),
    "central_line": ("Is there a central venous catheter?", "Is a central line present?"),
}


def _open_questions(rng: np.random.Generator, name: str, a: dict[str, Any]) -> list[SynthQuestion]:
    q = lambda text, answer, topic=name: SynthQuestion(text, str(answer), "open", topic)  # noqa: E731
    if name == "cardiomegaly":
        return [q(_pick(rng, ["How severe is the cardiomegaly?", "What is the degree of cardiac enlargement?"]),
                  a["severity"])]
    if name in ("pleural_effusion", "pneumothorax"):
        word = "pleural effusion" if name == "pleural_effusion" else "pneumothorax"
        return [q(_pick(rng, [f"Which side is the {word} on?", f"On which side is the {word}?"]), a["side"]),
                q(_pick(rng, [f"What is the size of the {word}?", f"How large is the {word}?"]), a["size"])]
    if name == "consolidation":
        word = "consolidation" if a["term"] == "consolidation" else "opacity"
        return [q(_pick(rng, [f"Where is the {word} located?", f"Which lobe contains the {word}?"]), a["lobe"])]
    if name == "nodule":
        return [q(f"Where is the {a['type']} located?", a["zone"]),
                q(_pick(rng, [f"What is the size of the {a['type']}?", f"How large is the {a['type']}?"]),
                  f"{a['size_mm']} mm")]
    if name == "edema":
        return [q("How severe is the pulmonary edema?", a["severity"])]
    if name == "atelectasis":
        where = "both lung bases" if a["side"] == "bilateral" else f"{a['side']} lung base"
        return [q(_pick(rng, ["Which side is the atelectasis on?", "On which side is the atelectasis?"]), a["side"]),
                q("Where is the atelectasis?", where)]
    if name == "ett":
        return [q("How far is the endotracheal tube tip above the carina?", f"{a['tip_to_carina_cm']} cm")]
    if name == "central_line":
        return [q("Where does the central line tip terminate?", a["tip"])]
    return []


REPORT_STYLES = ("structured", "free")
# Position of each findings sentence in a structured report (negatives use the keys of _NEGATIVES).
_READING_ORDER = {key: i for i, key in enumerate((
    "ett", "enteric_tube", "central_line", "consolidation", "opacity", "edema", "atelectasis", "nodule",
    "pleural_effusion", "pneumothorax", "cardiomegaly", "mediastinum", "fracture"))}


def write_text(rng: np.random.Generator, current: dict[str, dict[str, Any]], prior: dict[str, dict[str, Any]] | None,
               change: dict[str, str], temporal: bool, style: str = "structured") -> CXRText:
    """Report, CheXpert labels (as stated by the report), questions and prompt of one study.

    current / prior: finding name -> attributes of the findings present on each image (prior None: no prior).
    change: finding -> change label, for findings present on either image.
    style: "structured" (findings sentences in reading order) or "free" (shuffled).
    """
    if style not in REPORT_STYLES:
        raise ValueError(f"report style must be one of {REPORT_STYLES}, got {style!r}")
    stated: dict[str, str] = dict.fromkeys(OBSERVATIONS, "not_mentioned")

    def state(obs: str, value: str) -> None:
        if _PRIORITY[value] > _PRIORITY[stated[obs]]:
            stated[obs] = value

    body: list[str] = []
    topics: list[str] = []  # the _READING_ORDER key of each body sentence
    intro: list[str] = []
    if temporal and prior is None:
        intro.append(_pick(rng, ["No prior study is available for comparison.",
                                 "There are no prior images for comparison.", "No comparison study is available."]))
    elif prior is not None and rng.random() < 0.6:
        intro.append(_pick(rng, ["Comparison is made with the prior radiograph.", "Compared with the prior study."]))

    for name in current:
        sentence = (_change_sentence(rng, name, change[name], current[name], prior.get(name))
                    if prior is not None and name in change else _present_sentence(rng, name, current[name]))
        body.append(sentence)
        topics.append(name)
        state(observation(name, current[name]), "positive")
    if prior is not None:
        for name, label in change.items():
            if label == "resolved":
                body.append(_change_sentence(rng, name, "resolved", None, prior[name]))
                topics.append(name)
                state(observation(name, prior[name]), "negative")

    # Explicit negatives for some absent findings (each with probability 0.5, never contradicting the image).
    mentioned = set(current) | {n for n, c in change.items() if c == "resolved"}
    candidates = [n for n in ("cardiomegaly", "pleural_effusion", "pneumothorax", "nodule", "edema", "atelectasis")
                  if n not in mentioned]
    if "consolidation" not in mentioned:
        candidates.append(str(_pick(rng, ["consolidation", "opacity"])))
    if "cardiomegaly" not in current:
        candidates.append("mediastinum")
    candidates.append("fracture")
    for key in candidates:
        if rng.random() < 0.5:
            obs, options = _NEGATIVES[key]
            body.append(_pick(rng, options))
            topics.append(key)
            state(obs, "negative")
    if style == "free":
        order = rng.permutation(len(body))
    else:  # stable: a finding's own sentence comes before a negative of the same topic
        order = sorted(range(len(body)), key=lambda i: _READING_ORDER[topics[i]])
    findings_text = " ".join(intro + [body[i] for i in order])

    impression: list[str] = []
    for name, a in current.items():
        if name in DEVICE_NAMES:
            continue
        label = change.get(name) if prior is not None else None
        suffix = {"new": ", new since the prior study", "increased": ", increased", "decreased": ", decreased",
                  "unchanged": ", unchanged", None: ""}[label]
        line = f"{_cap(noun_phrase(name, a))}{suffix}"
        if name == "consolidation" and a["term"] == "consolidation" and rng.random() < 0.35:
            line += ", which may represent pneumonia"
            state("Pneumonia", "uncertain")
        impression.append(line + ".")
    if "ett" in current:
        impression.append("Low-lying endotracheal tube." if current["ett"]["position"] == "low"
                          else "Endotracheal tube in standard position.")
    pathology = any(stated[o] in ("positive", "uncertain") for o in OBSERVATIONS if o not in ("Support Devices",
                                                                                              "No Finding"))
    if not pathology:
        normal = ["No acute cardiopulmonary process.", "No acute cardiopulmonary abnormality."]
        if not current:
            normal.append("Normal chest radiograph.")
        impression.append(_pick(rng, normal))
        stated["No Finding"] = "positive"
    if len(impression) > 1 and rng.random() < 0.4:
        impression_text = " ".join(f"{i + 1}. {s}" for i, s in enumerate(impression))
    else:
        impression_text = " ".join(impression)
    report = f"FINDINGS: {findings_text}\nIMPRESSION: {impression_text}"

    questions = _questions(rng, current, prior, change, temporal)
    prompt = _pick(rng, TEMPORAL_PROMPTS if prior is not None else REPORT_PROMPTS)
    return CXRText(report=report, chexpert=stated, questions=questions, prompt=prompt)


def _questions(rng: np.random.Generator, current: dict[str, dict[str, Any]], prior: dict | None,
               change: dict[str, str], temporal: bool) -> list[SynthQuestion]:
    from medvlm.synth.cxr import FINDINGS

    absent = [n for n in FINDINGS if n not in current]
    asked_absent = [absent[i] for i in rng.permutation(len(absent))[: max(2, len(current))]]
    closed = [SynthQuestion(_pick(rng, _CLOSED[n]), "yes" if n in current else "no", "closed", n)
              for n in list(current) + asked_absent]
    open_ = [q for name, a in current.items() for q in _open_questions(rng, name, a)]
    if rng.random() < 0.5:
        devices = [DEVICE_NAMES[n] for n in ("ett", "enteric_tube", "central_line") if n in current]
        open_.append(SynthQuestion("Which support devices are present?", ", ".join(devices) or "none", "open",
                                   "device"))
    if prior is not None:
        for name, label in change.items():
            attrs = current.get(name) or prior[name]
            open_.append(SynthQuestion(f"How has {_the(name, attrs)} changed since the prior study?", label, "open",
                                       "change"))
    elif temporal:
        closed.append(SynthQuestion("Is a prior study available for comparison?", "no", "closed", "change"))
    questions = closed + open_
    return [questions[i] for i in rng.permutation(len(questions))]
