"""METEOR 1.5 through the jar that pycocoevalcap ships, run as one Java process with a filtered paraphrase table.

Texts go to the jar exactly as pycocoevalcap's evaluation pipeline sends them: PTB-tokenised and
lower-cased (:mod:`medvlm.evaluate.ptb`), the hypothesis with ``|||`` removed and double spaces
collapsed, references joined by ``|||``; the jar runs with ``-stdio -l en -norm``. Values equal
``pycocoevalcap.meteor.meteor.Meteor().compute_score`` on the tokenised texts.

Start-up: the jar spends ~9 s parsing its 5.27 M-entry paraphrase table. Most entries cannot match a given
set of texts, so medvlm indexes the table once per machine (:class:`ParaphraseIndex`, in the cache) and starts
each jar with ``-a <table>`` holding only the entries that can match in the texts to score (ready in about
a second). The statistics are unchanged; the tests check that against pycocoevalcap's own jar.

For each segment the jar returns a line of match statistics; a corpus METEOR is computed from the
statistics summed over segments. :meth:`MeteorStats.aggregate` re-implements that last step
(:func:`corpus_meteor_from_stats`: METEOR 1.5's English parameters, checked against the jar on real
reports in the tests), so a bootstrap resample costs one numpy sum and no Java round trip. ``meteor_segment_mean`` is the plain mean of segment scores.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medvlm.evaluate.nlg import normalize_references, tokenize_pairs
from medvlm.fileio import atomic_dir

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


# ---------------------------------------------------------------------------------------------------------
# The paraphrase table, indexed once per machine and filtered per scorer.
#
# The jar reads its table (3 lines per entry: a probability it ignores, a phrase, a paraphrase; words split
# at whitespace) into a word trie, and the paraphrase module only ever matches an entry whose phrase equals
# a run of words on one side of a segment and whose paraphrase equals a run on the other (ParaphraseMatcher
# compares word ids; a word of the texts that the table lacks gets id -1). An entry that no segment holds in
# that way therefore never matches, and dropping it changes no statistic, as long as the kept entries keep
# their order (the order of matches decides ties in the alignment search). See docs/evaluation.md.


PARAPHRASE_INDEX_FORMAT = 2
# JVM options for a jar that scores a few thousand reports: the JIT's first tier only and the serial
# collector. Measured on 2 cores with 2,000 reports: the same wall time as the JVM's defaults on an idle
# machine with 40% less CPU (the optimising compiler's threads take the other core), half the wall time on a
# busy one; with 12,000 long reports the defaults are faster (their compiled code pays off). Java's arithmetic
# is strict, so the statistics do not depend on them (the tests compare with pycocoevalcap's own jar).
SMALL_RUN_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
SMALL_RUN_MAX_CHARS = 3_000_000  # characters of SCORE lines, about 6,000 reports of 500 characters
_SEPARATORS = b" \t\n\f"  # java.util.StringTokenizer's delimiters; \r would also end a line and is refused
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
# What the jar's normaliser (-norm) rewrites before it splits at whitespace; its other rules only insert
# spaces next to a character outside [A-Za-z0-9] (punctuation, symbols, non-ASCII letters, apostrophes).
_NORMALISER_REPLACEMENTS = (
    ("&quot;", '"'), ("&apos;", "'"), ("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"),
    ("`", "'"), ("\u2018", "'"), ("\u2019", "'"), ("\u201c", '"'), ("\u201d", '"'), ("''", '"'), ("\u2013", "-"),
)


def default_paraphrase_table(jar_path: str | Path | None = None) -> Path:
    """The English paraphrase table the jar loads by default: ``data/paraphrase-en.gz`` beside the jar."""
    jar = Path(jar_path) if jar_path is not None else default_jar_path()
    table = jar.parent / "data" / "paraphrase-en.gz"
    if not table.is_file():
        raise RuntimeError(f"the METEOR paraphrase table is missing: {table}; reinstall pycocoevalcap==1.2")
    return table


def _cache_root() -> Path:
    from medvlm.fileio import default_cache_dir

    return default_cache_dir()


def paraphrase_index_dir(table: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where the index of ``table`` lives: ``<cache>/meteor/<name>-<fingerprint>`` (cache: ``cache_dir``, else
    $MEDVLM_CACHE, else ~/.cache/medvlm). The fingerprint covers the size and the first and last 64 KiB."""
    table = Path(table)
    size = table.stat().st_size
    digest = hashlib.blake2b(str(size).encode(), digest_size=8)
    with open(table, "rb") as f:
        digest.update(f.read(1 << 16))
        f.seek(max(size - (1 << 16), 0))
        digest.update(f.read())
    root = Path(cache_dir) if cache_dir is not None else _cache_root()
    name = table.name.removesuffix(".gz")
    return root / "meteor" / f"{name}-{digest.hexdigest()}-v{PARAPHRASE_INDEX_FORMAT}"


def _powers(base: int, n: int) -> np.ndarray:
    """base**k mod 2**64 for k < n, (n,) uint64 (as an outer product of low and high powers: one pass)."""
    low = np.full(1 << 12, base, dtype=np.uint64)
    low[0] = 1
    low = np.cumprod(low, dtype=np.uint64)
    high = np.full(-(-n >> 12), pow(base, 1 << 12, 1 << 64), dtype=np.uint64)
    high[0] = 1
    high = np.cumprod(high, dtype=np.uint64)
    return np.multiply.outer(high, low).ravel()[:n]


def _factorize(keys: np.ndarray, slot_bits: int = 20) -> tuple[np.ndarray, int]:
    """Dense ids (int32, in hash-table order) of uint64 keys, and the number of distinct keys.

    Open addressing without a sort: every key writes itself into a slot picked by some of its bits; the keys
    that read their own value back own that slot (every written slot has an owner), the others (a different
    key took it) go to the next round, which picks slots from other bits. Much faster than
    np.unique(return_inverse=True) when, as for the words of a table, few distinct keys repeat many times.
    """
    ids = np.empty(len(keys), dtype=np.int32)
    todo: np.ndarray | None = None  # None: all keys
    n_ids = 0
    mask = (1 << slot_bits) - 1
    for shift in (64 - slot_bits, 32 - slot_bits // 2, 0):
        current = keys if todo is None else keys[todo]
        slot = (current >> np.uint64(shift)).astype(np.intp)
        slot &= mask
        table = np.zeros(1 << slot_bits, dtype=np.uint64)
        table[slot] = current
        lost = table[slot] != current
        taken = np.zeros(1 << slot_bits, dtype=bool)
        taken[slot] = True
        slot_id = (np.cumsum(taken, dtype=np.int32) - 1 + n_ids).astype(np.int32)
        n_ids += int(np.count_nonzero(taken))
        # the losers' ids are wrong (their slot counted once, for its owner) and are set by a later round
        if todo is None:
            np.take(slot_id, slot, out=ids)
            todo = np.flatnonzero(lost)
        else:
            ids[todo] = slot_id[slot]
            todo = todo[lost]
        if len(todo) == 0:
            return ids, n_ids
    remaining, inverse = np.unique(keys[todo], return_inverse=True)
    ids[todo] = inverse + n_ids
    return ids, n_ids + len(remaining)


def build_paraphrase_index(table: str | Path, out_dir: str | Path, *, progress: bool = True,
                           piece_bytes: int = 1 << 23) -> None:
    """Index a METEOR paraphrase table (gzip, 3 lines per entry) into ``out_dir`` (see :class:`ParaphraseIndex`).

    Streams the table in 8 MiB pieces and tokenises each with numpy: a word's id comes from two 64-bit
    polynomial hashes of its bytes (one to assign ids, the other to check that no two words share one).
    The 62 MB English table (5.27 M entries, 43 k distinct words) takes about 16 s on one core.
    """
    from tqdm import tqdm

    table, out_dir = Path(table), Path(out_dir)
    rng = np.random.default_rng(20150210)
    separator = np.zeros(256, dtype=bool)
    separator[list(_SEPARATORS)] = True
    bases = [int(rng.integers(1 << 61, 1 << 62)) * 2 + 1 for _ in range(2)]  # odd, so invertible mod 2**64
    max_piece = piece_bytes + (1 << 20)  # a piece is whole lines: up to piece_bytes and the line it cuts
    powers = [_powers(b, max_piece) for b in bases]
    inverse_powers = [_powers(pow(b, -1, 1 << 64), max_piece) for b in bases]
    work = np.empty(max_piece, dtype=np.uint64)  # reused: fresh 64 MB arrays per piece cost page faults

    pieces: list[bytes] = []
    word_hashes: list[list[np.ndarray]] = [[], []]
    word_starts: list[np.ndarray] = []  # per piece, where its words start (probability lines excluded)
    phrase_counts: list[np.ndarray] = []  # words per phrase line
    probability_text: list[bytes] = []  # the probability lines, concatenated without their newlines
    probability_lengths: list[np.ndarray] = []
    n_lines = 0
    raw = open(table, "rb")
    bar = tqdm(total=table.stat().st_size, unit="B", unit_scale=True, disable=not progress,
               desc="indexing the METEOR paraphrase table (once per machine)")
    try:
        with raw, gzip.GzipFile(fileobj=raw) as text_file:
            carry = b""
            while True:
                block = text_file.read(piece_bytes)
                data = carry + block
                if not data:
                    break
                cut = data.rfind(b"\n") + 1 if block else len(data)
                piece, carry = data[:cut], data[cut:]
                bar.update(raw.tell() - bar.n)
                if not piece:
                    continue
                if not piece.endswith(b"\n"):
                    piece += b"\n"  # the last line of a file without a final newline
                if len(piece) > max_piece:
                    raise ValueError(f"{table}: a line longer than 1 MiB; is this a METEOR paraphrase table?")
                if b"\r" in piece:
                    raise ValueError(f"{table}: carriage returns (\\r) in the table; METEOR tables use \\n line ends")
                d = np.frombuffer(piece, dtype=np.uint8)
                line_ends = np.flatnonzero(d == 10)
                is_sep = d <= 32  # one fast pass; exact when the only control characters are newlines
                if np.count_nonzero(d < 32) != len(line_ends):
                    is_sep = separator[d]
                starts = np.flatnonzero(is_sep[:-1] > is_sep[1:]) + 1  # separator, then not
                if not is_sep[0]:
                    starts = np.concatenate([[0], starts])
                line_starts = np.concatenate([[0], line_ends[:-1] + 1])
                first_word = np.flatnonzero(d[starts - 1] == 10)  # d[-1] is the piece's final newline
                if len(first_word) != len(line_ends):  # an empty line, or one that starts with a space
                    first_word = np.searchsorted(starts, line_starts)
                counts = np.diff(first_word, append=len(starts))
                kind = (n_lines + np.arange(len(line_ends))) % 3  # 0 probability, 1 phrase, 2 paraphrase
                prob_lines = np.flatnonzero(kind == 0)
                if (counts[prob_lines] != 1).any():
                    line = n_lines + 1 + int(prob_lines[np.flatnonzero(counts[prob_lines] != 1)[0]])
                    raise ValueError(f"{table}: line {line} should be an entry's probability (one number); METEOR "
                                     "paraphrase tables hold entries of 3 lines (probability, phrase, paraphrase)")
                is_word = np.repeat(kind != 0, counts)
                n = len(d)
                v = work[:n]
                word_bytes = d * ~is_sep  # separators count 0: a sum over a word and the spaces after it is the word's
                for k in range(2):
                    np.multiply(word_bytes, powers[k][:n], out=v, dtype=np.uint64)
                    h = np.add.reduceat(v, starts)
                    h *= inverse_powers[k][starts]
                    word_hashes[k].append(h[is_word])
                word_starts.append(starts[is_word].astype(np.uint32))
                phrase_counts.append(counts[kind != 0])
                # probability lines kept as text: the bytes between their starts and ends
                marks = np.zeros(n + 1, dtype=np.int8)
                marks[line_starts[prob_lines]] = 1
                marks[line_ends[prob_lines]] = -1
                probability_text.append(d[np.cumsum(marks[:-1], dtype=np.int8).view(bool)].tobytes())
                probability_lengths.append(line_ends[prob_lines] - line_starts[prob_lines])
                pieces.append(piece)
                n_lines += len(line_ends)
        if n_lines % 3 or n_lines == 0:
            raise ValueError(f"{table}: {n_lines} lines, not a positive multiple of 3: the last entry is "
                             "incomplete (the jar would fail on it) or there is none")
        del work, powers, inverse_powers
        bar.set_postfix_str("vocabulary")
        hashes = np.concatenate(word_hashes[0])
        ids, n_words = _factorize(hashes)
        del hashes
        any_token = np.empty(n_words, dtype=np.int64)
        any_token[ids] = np.arange(len(ids), dtype=np.int32)
        check = np.concatenate(word_hashes[1])
        if not np.array_equal(check[any_token][ids], check):
            raise RuntimeError(f"{table}: two different words share a 64-bit hash; report this to medvlm")
        del check, word_hashes
        # the bytes of one occurrence of each word
        piece_first_token = np.cumsum([0] + [len(s) for s in word_starts])
        which_piece = np.searchsorted(piece_first_token, any_token, side="right") - 1
        ends = re.compile(b"[" + re.escape(_SEPARATORS) + b"]")
        words = []
        for p, t in zip(which_piece.tolist(), any_token.tolist(), strict=True):
            start = int(word_starts[p][t - piece_first_token[p]])
            words.append(pieces[p][start : ends.search(pieces[p], start).start()])
        del pieces, word_starts
        order = sorted(range(n_words), key=words.__getitem__)
        rank = np.empty(n_words, dtype=np.int64)
        rank[order] = np.arange(n_words)
        id_dtype = np.uint16 if n_words <= 1 << 16 else np.uint32
        token_ids = rank.astype(id_dtype)[ids]
        del ids
        counts = np.concatenate(phrase_counts)
        if (counts == 0).any():
            line = 3 * (int(np.argmin(counts)) // 2) + int(np.argmin(counts)) % 2 + 2
            raise ValueError(f"{table}: line {line} has no word; every phrase line of a METEOR table needs one")
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        # group the entries by their least frequent word: an entry can be kept only if that word is known
        frequency_rank = np.empty(n_words, dtype=np.int64)
        frequency_rank[np.argsort(np.bincount(token_ids, minlength=n_words), kind="stable")] = np.arange(n_words)
        by_rank = np.argsort(frequency_rank)  # word id of each rank
        rarest = by_rank[np.minimum.reduceat(frequency_rank.astype(id_dtype)[token_ids], offsets[:-1:2])]
        entries_by_rare_word = np.argsort(rarest, kind="stable").astype(np.uint32)
        rare_word_offsets = np.zeros(n_words + 1, dtype=np.int64)
        np.cumsum(np.bincount(rarest, minlength=n_words), out=rare_word_offsets[1:])
        if offsets[-1] < 1 << 32:
            offsets = offsets.astype(np.uint32)
        probability_offsets = np.zeros(n_lines // 3 + 1, dtype=np.int64)
        np.cumsum(np.concatenate(probability_lengths), out=probability_offsets[1:])
        try:
            vocabulary = [words[i].decode("utf-8") for i in order]
        except UnicodeDecodeError as err:
            raise ValueError(f"{table}: a word is not UTF-8 ({err}); the jar reads the table as UTF-8") from None
        bar.set_postfix_str("writing")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "words.txt").write_text("".join(w + "\n" for w in vocabulary), encoding="utf-8")
        (out_dir / "probability_text.bin").write_bytes(b"".join(probability_text))
        np.save(out_dir / "probability_offsets.npy", probability_offsets)
        np.save(out_dir / "token_ids.npy", token_ids)
        np.save(out_dir / "line_offsets.npy", offsets)
        np.save(out_dir / "entries_by_rare_word.npy", entries_by_rare_word)
        np.save(out_dir / "rare_word_offsets.npy", rare_word_offsets)
        meta = {"format": PARAPHRASE_INDEX_FORMAT, "table": str(table), "table_bytes": table.stat().st_size,
                "entries": n_lines // 3, "words": n_words, "tokens": int(offsets[-1]),
                "max_word_chars": max(len(w) for w in vocabulary)}
        (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        bar.set_postfix_str("done")
    finally:
        bar.close()


@dataclass
class ParaphraseIndex:
    """A METEOR paraphrase table as arrays: entry ``e`` is ``probabilities[e]``, then phrase line ``2e`` and
    paraphrase line ``2e + 1``, whose words are ``words[token_ids[line_offsets[l]:line_offsets[l + 1]]]``.

    words: the distinct words, sorted; token_ids: (T,) uint16/uint32; line_offsets: (2E + 1,);
    probability_text / probability_offsets (E + 1,): entry e's first line, as written in the table, is
    ``probability_text[probability_offsets[e]:probability_offsets[e + 1]]`` (the jar reads and ignores it);
    entries_by_rare_word: (E,) the entries grouped by their least frequent word ``w``, group ``w`` at
    ``rare_word_offsets[w]:rare_word_offsets[w + 1]`` ((V + 1,)), each group in table order.
    """

    words: list[str]
    token_ids: np.ndarray
    line_offsets: np.ndarray
    probability_text: np.ndarray
    probability_offsets: np.ndarray
    entries_by_rare_word: np.ndarray
    rare_word_offsets: np.ndarray
    max_word_chars: int
    word_ids: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.word_ids = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def load(cls, folder: str | Path) -> ParaphraseIndex:
        """Open an index folder (arrays memory-mapped: a lookup reads only the pages it needs)."""
        folder = Path(folder)
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != PARAPHRASE_INDEX_FORMAT:
            raise ValueError(f"{folder}: index format {meta.get('format')}, expected {PARAPHRASE_INDEX_FORMAT}; "
                             "delete the folder and it is rebuilt on the next use")
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in
                  ("token_ids", "line_offsets", "probability_offsets", "entries_by_rare_word", "rare_word_offsets")}
        text = folder / "probability_text.bin"
        return cls(words=(folder / "words.txt").read_text(encoding="utf-8").splitlines(),
                   probability_text=np.memmap(text, dtype=np.uint8, mode="r") if text.stat().st_size else np.zeros(0, np.uint8),
                   max_word_chars=int(meta["max_word_chars"]), **arrays)

    @classmethod
    def ensure(cls, table: str | Path | None = None, cache_dir: str | Path | None = None, *,
               progress: bool = True) -> ParaphraseIndex:
        """The index of ``table`` (default: the jar's English table) from the cache; built there on first use."""
        table = Path(table) if table is not None else default_paraphrase_table()
        folder = paraphrase_index_dir(table, cache_dir)
        if not (folder / "meta.json").is_file():
            with atomic_dir(folder) as tmp:  # concurrent first calls each build; one whole folder wins
                build_paraphrase_index(table, tmp, progress=progress)
        return cls.load(folder)

    def __len__(self) -> int:
        return len(self.probability_offsets) - 1

    def _entry_tokens(self, entries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token positions of ``entries`` one after another, and each entry's token count."""
        first = self.line_offsets[2 * entries].astype(np.int64)
        counts = self.line_offsets[2 * entries + 2].astype(np.int64) - first
        return np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(counts.sum()), counts

    def entries_for_segments(self, hypothesis_words: Sequence[Iterable[int]],
                             reference_words: Sequence[Iterable[int]],
                             max_bitset_work: int = 50_000_000) -> np.ndarray:
        """Indices (ascending) of the entries that can match in some segment: the phrase within segment
        ``s``'s hypothesis words and the paraphrase within its reference words, or the other way round.

        hypothesis_words[s], reference_words[s]: word ids (see :attr:`word_ids`) of segment s.
        Above ``max_bitset_work`` (tokens x segments / 64) the per-segment test is skipped: then every
        entry whose words all occur somewhere is kept (more entries, same scores).
        """
        n_segments = len(hypothesis_words)
        rows_h = [np.fromiter(ids, dtype=np.int64) for ids in hypothesis_words]
        rows_r = [np.fromiter(ids, dtype=np.int64) for ids in reference_words]
        relevant = np.unique(np.concatenate(rows_h + rows_r + [np.zeros(0, dtype=np.int64)]))
        if len(relevant) == 0:
            return np.zeros(0, dtype=np.int64)
        # candidates: the entries whose least frequent word occurs; then those whose every word does
        first = self.rare_word_offsets[relevant].astype(np.int64)
        counts = self.rare_word_offsets[relevant + 1].astype(np.int64) - first
        slots = np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        entries = np.sort(self.entries_by_rare_word[slots].astype(np.int64))
        known = np.zeros(len(self.words), dtype=bool)
        known[relevant] = True
        positions, counts = self._entry_tokens(entries)
        if len(entries) == 0:
            return entries
        starts = np.cumsum(counts) - counts
        all_known = np.logical_and.reduceat(known[self.token_ids[positions]], starts)
        entries = entries[all_known]
        positions = positions[np.repeat(all_known, counts)]
        n_blocks = -(-n_segments // 64)
        if len(entries) == 0 or len(positions) * n_blocks > max_bitset_work:
            return entries
        # per segment: bit s % 64 of a word's row in block s // 64 says that segment s's hypothesis (or its
        # references) has the word
        compact = np.zeros(len(self.words), dtype=np.int64)
        compact[relevant] = np.arange(len(relevant))
        bitsets = []
        for rows in (rows_h, rows_r):
            segments = np.repeat(np.arange(n_segments), [len(r) for r in rows])
            bits = np.zeros((n_blocks, len(relevant)), dtype=np.uint64)
            np.bitwise_or.at(bits, (segments // 64, compact[np.concatenate(rows)]),
                             np.left_shift(np.uint64(1), (segments % 64).astype(np.uint64)))
            bitsets.append(bits)
        tokens = compact[self.token_ids[positions]]
        line_ends = self.line_offsets[np.stack([2 * entries, 2 * entries + 1, 2 * entries + 2], 1)].astype(np.int64)
        line_lengths = np.diff(line_ends, axis=1).ravel()
        line_starts = np.cumsum(line_lengths) - line_lengths

        def match_somewhere(hyp_bits: np.ndarray, ref_bits: np.ndarray, tokens: np.ndarray,
                            line_starts: np.ndarray) -> np.ndarray:
            in_hyp = np.bitwise_and.reduceat(hyp_bits[tokens], line_starts)  # per line: where all its words are
            in_ref = np.bitwise_and.reduceat(ref_bits[tokens], line_starts)
            return ((in_hyp[0::2] & in_ref[1::2]) | (in_ref[0::2] & in_hyp[1::2])) != 0

        # first all blocks folded onto one (segments s and s + 64k share a bit: a necessary condition, cheap),
        # then block by block on the entries that pass it
        folded = match_somewhere(*(np.bitwise_or.reduce(b, axis=0) for b in bitsets), tokens, line_starts)
        keep_tokens = np.repeat(folded, np.diff(line_ends[:, [0, 2]], axis=1).ravel())
        entries, tokens = entries[folded], tokens[keep_tokens]
        line_lengths = line_lengths.reshape(-1, 2)[folded].ravel()
        line_starts = np.cumsum(line_lengths) - line_lengths
        ok = np.zeros(len(entries), dtype=bool)
        for block in range(n_blocks if n_blocks > 1 else 0):
            ok |= match_somewhere(bitsets[0][block], bitsets[1][block], tokens, line_starts)
        return entries[ok] if n_blocks > 1 else entries

    def write_table(self, path: str | Path, entries: np.ndarray) -> None:
        """Write ``entries`` (in the given order) as a gzip table in the jar's 3-line format."""
        entries = np.asarray(entries, dtype=np.int64)
        positions, _ = self._entry_tokens(entries)
        lines = np.stack([2 * entries, 2 * entries + 1], axis=1).ravel()
        lengths = (self.line_offsets[lines + 1].astype(np.int64) - self.line_offsets[lines]).tolist()
        tokens = iter([self.words[i] for i in self.token_ids[positions].tolist()])
        phrases = [" ".join(itertools.islice(tokens, n)) for n in lengths]
        starts = self.probability_offsets[entries].tolist()
        ends = self.probability_offsets[entries + 1].tolist()
        out = []
        for k, (start, end) in enumerate(zip(starts, ends, strict=True)):
            out.extend((self.probability_text[start:end].tobytes().decode("utf-8"), phrases[2 * k], phrases[2 * k + 1]))
        Path(path).write_bytes(gzip.compress(("\n".join(out) + "\n" if out else "").encode("utf-8"), compresslevel=1))


class _JarWords:
    """Which table words the jar's ``-norm`` could make of a text, generously (more is harmless).

    The normaliser lowercases, rewrites a few entities and quotes, and splits words only next to characters
    outside [A-Za-z0-9]; so each word it makes is a piece of a space-separated token of the text (as given,
    lowercased, or rewritten) that starts and ends at the token's edges or next to such a character.
    Pieces longer than the longest table word are skipped. Remembers each token's answer.
    """

    def __init__(self, index: ParaphraseIndex):
        self._index = index
        self._known: dict[str, tuple[int, ...]] = {}

    def _token_words(self, token: str) -> tuple[int, ...]:
        word_ids = self._index.word_ids
        if token.isascii() and token.isalnum():
            found = word_ids.get(token)
            return () if found is None else (found,)
        cuts = sorted({0, len(token)}.union(*({i, i + 1} for i, c in enumerate(token) if c not in _WORD_CHARS)))
        ids = set()
        for a, start in enumerate(cuts):
            for end in cuts[a + 1 :]:
                if end - start > self._index.max_word_chars:
                    break
                found = word_ids.get(token[start:end])
                if found is not None:
                    ids.add(found)
        return tuple(ids)

    def __call__(self, texts: Iterable[str]) -> set[int]:
        """Ids of the table words the jar could see in ``texts``."""
        tokens: set[str] = set()
        for text in texts:
            lowered = text.lower()
            tokens.update(text.split(" "))
            tokens.update(lowered.split(" "))
            rewritten = lowered
            for old, new in _NORMALISER_REPLACEMENTS:
                if old in rewritten:
                    rewritten = rewritten.replace(old, new)
            tokens.update(rewritten.split(" "))
        ids: set[int] = set()
        for token in tokens:
            found = self._known.get(token)
            if found is None:
                found = self._known[token] = self._token_words(token)
            ids.update(found)
        return ids


class MeteorScorer:
    """METEOR 1.5 from one Java process at a time, loaded with only the paraphrases the texts can use.

    Thread-safe; use as a context manager or call :meth:`close`. The jar is started on the first call
    that needs it (or by :meth:`prepare`), with only the entries of the paraphrase table (see
    :class:`ParaphraseIndex`; built into the cache on first use, about 15 s once per machine) that can
    match in the texts of that call: an entry is kept when one segment has its phrase on one side and its
    paraphrase on the other (2,000 reports: 6,480 of 5.27 M entries). The jar is then ready in about a
    second instead of the ~9 s it needs to parse the whole table. A later call that needs an entry the
    running jar lacks restarts it with the entries of both calls (about a second), so a scorer reused
    across calls (e.g. validation rounds) stays exact; :attr:`jar_starts` counts the starts.

    jvm_options: options for ``java`` before ``-jar``; by default :data:`SMALL_RUN_JVM_OPTIONS` when the
    texts of the call that starts the jar are under :data:`SMALL_RUN_MAX_CHARS`, else none.

    >>> with MeteorScorer() as meteor:                          # doctest: +SKIP
    ...     meteor.score(["no effusion."], ["No pleural effusion."]).aggregate()["meteor"]
    """

    def __init__(self, jar_path: str | Path | None = None, *, java: str = "java", max_memory: str = "2G",
                 cache_dir: str | Path | None = None, progress: bool = True,
                 jvm_options: Sequence[str] | None = None):
        java_exe = shutil.which(java)
        if java_exe is None:
            raise RuntimeError(
                f"METEOR needs Java, but {java!r} is not on PATH; install a Java runtime "
                "(e.g. `apt-get install default-jre-headless`) or pass java=<path to the java binary>"
            )
        self._java = java_exe
        self._jar = Path(jar_path) if jar_path is not None else default_jar_path()
        self._max_memory = max_memory
        self._cache_dir = cache_dir
        self._progress = progress
        self._lock = threading.Lock()
        self._index: ParaphraseIndex | None = None
        self._jar_words: _JarWords | None = None
        self._entries_loaded: np.ndarray | None = None  # the table entries the running jar has
        self._jvm_options = None if jvm_options is None else tuple(jvm_options)
        self._process: subprocess.Popen | None = None
        self._stderr = None
        self._workdir: str | None = None
        self._closed = False
        self.jar_starts = 0

    def __enter__(self) -> MeteorScorer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            try:
                process.stdin.close()
            except OSError:
                pass
            process.kill()
            process.wait()
            process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def close(self) -> None:
        """Stop the Java process and remove its filtered table (idempotent)."""
        if not hasattr(self, "_lock"):
            return  # __init__ failed before any resource existed
        with self._lock:
            self._closed = True
            self._stop_process()
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None

    def _ensure_jar(self, lines: Sequence[str]) -> None:
        """Start (or restart) the jar so that its table holds every entry that can match in ``lines``.
        Called with the lock held."""
        if self._closed:
            raise RuntimeError("this MeteorScorer is closed; create a new one")
        if self._index is None:
            self._index = ParaphraseIndex.ensure(default_paraphrase_table(self._jar), self._cache_dir,
                                                 progress=self._progress)
            self._jar_words = _JarWords(self._index)
        hypothesis_words, reference_words = [], []
        for line in lines:
            parts = line.split("|||")  # as the jar splits a SCORE line: references, then the hypothesis
            hypothesis_words.append(self._jar_words(parts[-1:]))
            reference_words.append(self._jar_words(parts[1:-1]))
        needed = self._index.entries_for_segments(hypothesis_words, reference_words)
        if self._process is not None and np.isin(needed, self._entries_loaded, assume_unique=True).all():
            return
        if self._entries_loaded is not None:
            needed = np.union1d(needed, self._entries_loaded)
        self._stop_process()
        if self._workdir is None:
            self._workdir = tempfile.mkdtemp(prefix="medvlm-meteor-")
        table = Path(self._workdir) / f"paraphrase-{self.jar_starts}.gz"
        self._index.write_table(table, needed)
        self._stderr = tempfile.TemporaryFile()
        jvm_options = self._jvm_options
        if jvm_options is None:
            jvm_options = SMALL_RUN_JVM_OPTIONS if sum(map(len, lines)) <= SMALL_RUN_MAX_CHARS else ()
        # pycocoevalcap's command and working directory (the jar finds its data/ folder there), with the
        # filtered table (-a) and JVM options that only change speed
        self._process = subprocess.Popen(
            [self._java, *jvm_options, "-jar", f"-Xmx{self._max_memory}", self._jar.name, "-", "-", "-stdio",
             "-l", "en", "-norm", "-a", str(table)],
            cwd=self._jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
        )
        self._entries_loaded = needed
        self.jar_starts += 1
        for old in Path(self._workdir).glob("paraphrase-*.gz"):
            if old != table:
                old.unlink(missing_ok=True)

    def _exchange(self, lines: list[str], n_replies: int) -> list[str]:
        process = self._process
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

    @staticmethod
    def _score_lines(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> list[str]:
        lines = []
        for hyp, refs in zip(hypotheses, references, strict=True):
            # As pycocoevalcap's Meteor._stat; newlines would break the line protocol.
            hyp = hyp.replace("|||", "").replace("  ", " ").replace("\n", " ")
            lines.append(" ||| ".join(("SCORE", " ||| ".join(r.replace("\n", " ") for r in refs), hyp)))
        return lines

    def prepare(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
        """Start the jar for these tokenised texts now and wait until it answers (optional: the first
        :meth:`segment_statistics` call does the same); e.g. from a thread, to overlap it with other work."""
        lines = self._score_lines(hypotheses, references)
        with self._lock:
            self._ensure_jar(lines)
            self._exchange(["EVAL ||| " + " ".join(["0.0"] * _N_STATS)], 2)

    def segment_statistics(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
        """Jar statistics (N, 23) of tokenised hypotheses against their tokenised references."""
        lines = self._score_lines(hypotheses, references)
        replies: list[str] = []
        with self._lock:
            self._ensure_jar(lines)
            for start in range(0, len(lines), _LINES_PER_WRITE):
                chunk = lines[start : start + _LINES_PER_WRITE]
                replies.extend(self._exchange(chunk, len(chunk)))
        stats = np.array([[float(x) for x in r.split()] for r in replies], dtype=np.float64).reshape(-1, _N_STATS)
        return stats

    def evaluate_statistics(self, stats: np.ndarray) -> tuple[np.ndarray, float]:
        """The jar's own per-segment scores and corpus score for statistics rows (an ``EVAL`` request)."""
        rows = [" ".join(repr(float(x)) for x in row) for row in np.asarray(stats)]
        with self._lock:
            if self._process is None:
                self._ensure_jar([])
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
