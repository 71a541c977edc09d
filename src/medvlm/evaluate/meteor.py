"""METEOR 1.5 through the jar that pycocoevalcap ships, kept alive as one Java process.

Texts go to the jar exactly as pycocoevalcap's evaluation pipeline sends them: PTB-tokenised and
lower-cased (:mod:`medvlm.evaluate.ptb`), the hypothesis with ``|||`` removed and double spaces
collapsed, references joined by ``|||``; the jar runs with ``-stdio -l en -norm``. Values equal
``pycocoevalcap.meteor.meteor.Meteor().compute_score`` on the tokenised texts.

For each segment the jar returns a line of match statistics; a corpus METEOR is computed from the
statistics summed over segments. :meth:`MeteorStats.aggregate` re-implements that last step
(:func:`corpus_meteor_from_stats`: METEOR 1.5's English parameters, checked against the jar on real
reports in the tests), so a bootstrap resample costs one numpy sum and no Java round trip. ``meteor_segment_mean`` is the plain mean of segment scores.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medvlm.evaluate.nlg import normalize_references, tokenize_pairs

# METEOR 1.5 task "default" for English: alpha, beta, gamma, delta and module weights
# (exact, stem, synonym, paraphrase).
_ALPHA, _BETA, _GAMMA, _DELTA = 0.85, 0.20, 0.60, 0.75
_MODULE_WEIGHTS = np.array([1.0, 0.6, 0.8, 0.6])
_N_STAGES = 4
_N_STATS = 4 + 4 * _N_STAGES + 3
_LINES_PER_WRITE = 100  # keeps both pipe buffers far from full: no deadlock between our writes and its output


def default_jar_path() -> Path:
    """The METEOR 1.5 jar inside the installed pycocoevalcap package (not imported, only located)."""
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("METEOR needs the pycocoevalcap package (pip install 'medvlm[eval]'), which ships meteor-1.5.jar")
    jar = Path(spec.submodule_search_locations[0]) / "meteor" / "meteor-1.5.jar"
    if not jar.is_file():
        raise RuntimeError(f"meteor-1.5.jar not found at {jar}; reinstall pycocoevalcap==1.2")
    return jar


def meteor_from_stats(stats: np.ndarray) -> np.ndarray:
    """METEOR score(s) from jar statistics rows, (..., 23) -> (...), as METEOR 1.5 computes them."""
    stats = np.asarray(stats, dtype=np.float64)
    test_len, ref_len, test_func, ref_func = (stats[..., i] for i in range(4))
    stages = stats[..., 4 : 4 + 4 * _N_STAGES].reshape(*stats.shape[:-1], _N_STAGES, 4)
    chunks, test_word_matches, ref_word_matches = (stats[..., 4 + 4 * _N_STAGES + i] for i in range(3))
    test_content, ref_content, test_function, ref_function = (stages[..., i] for i in range(4))
    test_weighted = (_MODULE_WEIGHTS * (_DELTA * test_content + (1 - _DELTA) * test_function)).sum(-1)
    ref_weighted = (_MODULE_WEIGHTS * (_DELTA * ref_content + (1 - _DELTA) * ref_function)).sum(-1)
    test_weighted_len = _DELTA * (test_len - test_func) + (1 - _DELTA) * test_func
    ref_weighted_len = _DELTA * (ref_len - ref_func) + (1 - _DELTA) * ref_func
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(test_weighted_len > 0, test_weighted / test_weighted_len, 0.0)
        recall = np.where(ref_weighted_len > 0, ref_weighted / ref_weighted_len, 0.0)
        f_mean = np.where(
            (precision > 0) & (recall > 0), precision * recall / (_ALPHA * precision + (1 - _ALPHA) * recall), 0.0
        )
        total_test = (test_content + test_function).sum(-1)
        total_ref = (ref_content + ref_function).sum(-1)
        exact_alignment = (total_test == test_len) & (total_ref == ref_len) & (chunks == 1)
        frag = np.where(exact_alignment, 0.0, chunks / ((test_word_matches + ref_word_matches) / 2))
        penalty = _GAMMA * np.power(np.where(np.isfinite(frag), frag, 0.0), _BETA)
    return np.where(f_mean > 0, f_mean * (1 - penalty), 0.0)


def corpus_meteor_from_stats(stats: np.ndarray) -> float:
    """Corpus METEOR of statistics rows (N, 23), as the jar's ``EVAL`` computes it.

    The jar sums the rows, except that a segment aligned word for word in one chunk adds no chunk
    (found by comparison with the jar; without this, corpus scores drift by up to ~1e-3).
    """
    rows = np.array(stats, dtype=np.float64, ndmin=2)
    stages = rows[:, 4 : 4 + 4 * _N_STAGES].reshape(-1, _N_STAGES, 4)
    chunks = rows[:, 4 + 4 * _N_STAGES]
    perfect = (
        (stages[:, :, [0, 2]].sum(axis=(1, 2)) == rows[:, 0])
        & (stages[:, :, [1, 3]].sum(axis=(1, 2)) == rows[:, 1])
        & (chunks == 1)
    )
    rows[perfect, 4 + 4 * _N_STAGES] = 0.0
    return float(meteor_from_stats(rows.sum(axis=0)))


@dataclass
class MeteorStats:
    """Per-segment METEOR statistics (N, 23) and the jar's per-segment scores (N,)."""

    stats: np.ndarray
    per_segment: np.ndarray

    def __len__(self) -> int:
        return len(self.per_segment)

    def aggregate(self, indices: np.ndarray | Sequence[int] | None = None) -> dict[str, float]:
        """``meteor`` (corpus METEOR from summed statistics) and ``meteor_segment_mean`` over ``indices``."""
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            raise ValueError("aggregate needs at least one segment index")
        return {
            "meteor": corpus_meteor_from_stats(self.stats[idx]),
            "meteor_segment_mean": float(self.per_segment[idx].mean()),
        }


class MeteorScorer:
    """One long-lived METEOR 1.5 Java process; thread-safe; use as a context manager or call :meth:`close`.

    The jar loads its paraphrase tables (about 10 s of CPU) in the background from construction on: create
    the scorer before other work to overlap that, and reuse it across calls (e.g. validation rounds).

    >>> with MeteorScorer() as meteor:                          # doctest: +SKIP
    ...     meteor.score(["no effusion."], ["No pleural effusion."]).aggregate()["meteor"]
    """

    def __init__(self, jar_path: str | Path | None = None, *, java: str = "java", max_memory: str = "2G"):
        java_exe = shutil.which(java)
        if java_exe is None:
            raise RuntimeError(
                f"METEOR needs Java, but {java!r} is not on PATH; install a Java runtime "
                "(e.g. `apt-get install default-jre-headless`) or pass java=<path to the java binary>"
            )
        jar = Path(jar_path) if jar_path is not None else default_jar_path()
        self._stderr = tempfile.TemporaryFile()
        self._lock = threading.Lock()
        # Same command and working directory as pycocoevalcap (the jar finds its data/ folder there).
        self._process: subprocess.Popen | None = subprocess.Popen(
            [java_exe, "-jar", f"-Xmx{max_memory}", jar.name, "-", "-", "-stdio", "-l", "en", "-norm"],
            cwd=jar.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )

    def __enter__(self) -> MeteorScorer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def close(self) -> None:
        """Stop the Java process (idempotent)."""
        process, self._process = getattr(self, "_process", None), None
        if process is not None:
            try:
                process.stdin.close()
            except OSError:
                pass
            process.kill()
            process.wait()
            process.stdout.close()
        if getattr(self, "_stderr", None) is not None:
            self._stderr.close()
            self._stderr = None

    def _exchange(self, lines: list[str], n_replies: int) -> list[str]:
        process = self._process
        if process is None:
            raise RuntimeError("this MeteorScorer is closed; create a new one")
        process.stdin.write("".join(line + "\n" for line in lines).encode())
        process.stdin.flush()
        replies = []
        for _ in range(n_replies):
            reply = process.stdout.readline()
            if not reply:
                self._stderr.seek(0)
                err = self._stderr.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"the METEOR jar stopped (exit code {process.poll()}); its stderr:\n{err}")
            replies.append(reply.decode().strip())
        return replies

    def segment_statistics(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
        """Jar statistics (N, 23) of tokenised hypotheses against their tokenised references."""
        lines = []
        for hyp, refs in zip(hypotheses, references, strict=True):
            # As pycocoevalcap's Meteor._stat; newlines would break the line protocol.
            hyp = hyp.replace("|||", "").replace("  ", " ").replace("\n", " ")
            lines.append(" ||| ".join(("SCORE", " ||| ".join(r.replace("\n", " ") for r in refs), hyp)))
        replies: list[str] = []
        with self._lock:
            for start in range(0, len(lines), _LINES_PER_WRITE):
                chunk = lines[start : start + _LINES_PER_WRITE]
                replies.extend(self._exchange(chunk, len(chunk)))
        stats = np.array([[float(x) for x in r.split()] for r in replies], dtype=np.float64).reshape(-1, _N_STATS)
        return stats

    def evaluate_statistics(self, stats: np.ndarray) -> tuple[np.ndarray, float]:
        """The jar's own per-segment scores and corpus score for statistics rows (an ``EVAL`` request)."""
        rows = [" ".join(repr(float(x)) for x in row) for row in np.asarray(stats)]
        with self._lock:
            replies = self._exchange(["EVAL ||| " + " ||| ".join(rows)], len(rows) + 1)
        return np.array([float(r) for r in replies[:-1]]), float(replies[-1])

    def score(
        self,
        predictions: Sequence[str],
        references: Sequence[str] | Sequence[Sequence[str]],
        *,
        tokenized: bool = False,
    ) -> MeteorStats:
        """METEOR statistics of predictions against references (one string or list of strings each).

        Texts are PTB-tokenised as pycocoevalcap's pipeline does unless ``tokenized`` says they are.
        """
        if tokenized:
            hyps = list(predictions)
            if not hyps:
                raise ValueError("no predictions to score")
            refs = normalize_references(references, len(hyps))
        else:
            hyps, refs = tokenize_pairs(predictions, references)
        stats = self.segment_statistics(hyps, refs)
        per_segment, _ = self.evaluate_statistics(stats)
        return MeteorStats(stats=stats, per_segment=per_segment)


def report_meteor(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    scorer: MeteorScorer | None = None,
) -> dict[str, float]:
    """``meteor`` and ``meteor_segment_mean`` of generated reports; starts (and stops) a jar unless given one."""
    if scorer is not None:
        return scorer.score(predictions, references).aggregate()
    with MeteorScorer() as own:
        return own.score(predictions, references).aggregate()
