"""Rule labeler vs. IU X-ray MeSH tags: per-observation precision / recall of positives, and reports per second.

Data: the 3,955 Indiana University chest X-ray report XMLs shipped in torchxrayvision's
`data/NLMCXR_reports.tgz` (CC BY-NC-ND; read in place, never copied). Text = FINDINGS + IMPRESSION.
Reference = the human-assigned MeSH `<major>` tags, mapped to CheXpert observations by `MESH_TO_OBSERVATION`
(a term, optionally with a required qualifier word). Observations with no MeSH counterpart (Pleural Other is
only partly covered, Enlarged Cardiomediastinum through "Mediastinum/prominent|enlarged|widened") are listed
with their support so a reader sees how much evidence each row rests on.

Speed is printed as reports/second (wall clock and per CPU-second of this process) and as a ratio to a
baseline in the same run: a plain `str.lower()` + `str.split('.')` pass over the same texts (the cheapest
possible "labeler").

Run: .venv/bin/python benchmarks/labeler_iu.py [--show-errors OBSERVATION]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from medvlm.evaluate.labeler import CHEXPERT_OBSERVATIONS, label_reports

# MeSH major term -> (observation, qualifier words of which one must appear, or None for any).
MESH_TO_OBSERVATION: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "normal": ("No Finding", None),
    "Cardiomegaly": ("Cardiomegaly", None),
    "Cardiac Shadow": ("Cardiomegaly", ("enlarged",)),
    "Mediastinum": ("Enlarged Cardiomediastinum", ("prominent", "enlarged", "widened")),
    "Opacity": ("Lung Opacity", None),
    "Airspace Disease": ("Lung Opacity", None),
    "Infiltrate": ("Lung Opacity", None),
    "Cicatrix": ("Lung Opacity", ("lung",)),
    "Nodule": ("Lung Lesion", ("lung",)),
    "Mass": ("Lung Lesion", ("lung",)),
    "Pulmonary Edema": ("Edema", None),
    "Edema": ("Edema", None),
    "Pulmonary Congestion": ("Edema", None),
    "Heart Failure": ("Edema", None),
    "Consolidation": ("Consolidation", None),
    "Pneumonia": ("Pneumonia", None),
    "Pulmonary Atelectasis": ("Atelectasis", None),
    "Pneumothorax": ("Pneumothorax", None),
    "Hydropneumothorax": ("Pneumothorax", None),
    "Pleural Effusion": ("Pleural Effusion", None),
    "Thickening": ("Pleural Other", ("pleura",)),
    "Fractures, Bone": ("Fracture", None),
    "Rib Fractures": ("Fracture", None),
    "Catheters, Indwelling": ("Support Devices", None),
    "Implanted Medical Device": ("Support Devices", None),
    "Medical Device": ("Support Devices", None),
    "Tube, Inserted": ("Support Devices", None),
    "Stents": ("Support Devices", None),
}


def default_archive() -> Path:
    # torchxrayvision is installed --no-deps and does not import: locate its data folder without importing it.
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or spec.origin is None:
        raise SystemExit("torchxrayvision is not installed: pass --archive NLMCXR_reports.tgz")
    return Path(spec.origin).parent / "data" / "NLMCXR_reports.tgz"


def mesh_observations(mesh_terms: list[str]) -> set[str]:
    found = set()
    for term in mesh_terms:
        head, *qualifiers = [p.strip() for p in term.split("/")]
        rule = MESH_TO_OBSERVATION.get(head)
        if rule is None:
            continue
        observation, required = rule
        if required is None or any(q.lower() in required for q in qualifiers):
            found.add(observation)
    return found


def read_iu_reports(archive: Path) -> list[tuple[str, str, set[str]]]:
    """(report id, FINDINGS + IMPRESSION text, MeSH observations) for reports with any text."""
    rows = []
    with tarfile.open(archive) as tar:
        for member in tar:
            if not member.name.endswith(".xml"):
                continue
            root = ET.fromstring(tar.extractfile(member).read())
            parts = [
                (a.text or "").strip()
                for a in root.iter("AbstractText")
                if a.get("Label") in ("FINDINGS", "IMPRESSION") and a.text
            ]
            mesh = root.find("MeSH")
            terms = [e.text or "" for e in mesh.findall("major")] if mesh is not None else []
            text = " ".join(p for p in parts if p)
            if text:
                rows.append((Path(member.name).stem, text, mesh_observations(terms)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archive", type=Path, default=None, help="NLMCXR_reports.tgz (default: torchxrayvision's)")
    parser.add_argument("--show-errors", default=None, help="print false positives/negatives for this observation")
    args = parser.parse_args(argv)
    archive = args.archive or default_archive()
    rows = read_iu_reports(archive)
    texts = [t for _, t, _ in rows]

    start = time.perf_counter()
    for _ in range(3):
        [t.lower().split(".") for t in texts]
    baseline_s = (time.perf_counter() - start) / 3
    start, start_cpu = time.perf_counter(), time.process_time()
    labels = label_reports(texts)
    labeler_s, labeler_cpu_s = time.perf_counter() - start, time.process_time() - start_cpu

    print(f"IU X-ray reports with FINDINGS/IMPRESSION text: {len(rows)} (from {archive.name})")
    print(f"rule labeler: {len(rows) / labeler_s:,.0f} reports/s; {labeler_s / baseline_s:,.0f}x the time of a "
          f"lower()+split() pass ({len(rows) / baseline_s:,.0f} reports/s); "
          f"{len(rows) / labeler_cpu_s:,.0f} reports per CPU-second (process time, less sensitive to other load)")
    print()
    header = f"{'observation':<28}{'MeSH+':>6}{'ours+':>6}{'prec':>7}{'recall':>8}{'F1':>7}{'recall+u':>10}"
    print(header)
    print("-" * len(header))
    for obs in CHEXPERT_OBSERVATIONS:
        tp = fp = fn = tp_u = 0
        for (_, _, mesh), lab in zip(rows, labels, strict=True):
            ref = obs in mesh
            pred = lab[obs] == "positive"
            tp += ref and pred
            fp += pred and not ref
            fn += ref and not pred
            tp_u += ref and lab[obs] in ("positive", "uncertain")
        support = tp + fn
        if support == 0:
            print(f"{obs:<28}{support:>6}{tp + fp:>6}   (no MeSH counterpart)")
            continue
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / support
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        print(f"{obs:<28}{support:>6}{tp + fp:>6}{precision:>7.3f}{recall:>8.3f}{f1:>7.3f}{tp_u / support:>10.3f}")

    if args.show_errors:
        obs = args.show_errors
        for (rid, text, mesh), lab in zip(rows, labels, strict=True):
            ref, pred = obs in mesh, lab[obs] == "positive"
            if ref != pred:
                print(f"\n[{'FP' if pred else 'FN'} {rid} ours={lab[obs]}] {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
