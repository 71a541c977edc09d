"""Synthetic histopathology: RGB H&E-like tiles of normal tissue or carcinoma of grade 1-3, with masks and text.

A tile is benign (glands lined by small uniform nuclei in fibrous stroma) or tumour (sheets of atypical cells).
A tumour has three scored features, each 1-3, in the spirit of the Nottingham grade:
  cellularity      nuclear density: nuclei 15 / 12 / 9.5 um apart                 (low / moderate / high)
  pleomorphism     nuclear size 7 / 8.5 / 10.5 um, with growing variance of size, shape and staining
                                                                                     (mild / moderate / marked)
  mitoses          mitotic figures in the tile: 0-1 / 2-3 / 4-6
Total 3-5 -> grade 1 (well differentiated), 6-7 -> grade 2 (moderately), 8-9 -> grade 3 (poorly).
The grade is drawn first (`PathConfig.grade_weights`), then scores that give it.

Colour follows Beer-Lambert absorption of two stains: per pixel, haematoxylin (nuclei, purple-blue) and eosin
(stroma and cytoplasm, pink) optical densities times slide-specific stain vectors. Pixels are (S, S, 3) uint8 at
`microns_per_px`; masks: "nuclei" (all nuclei), "tumour" (tumour area, tumour tiles), "mitoses" (if any).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from medvlm.synth.base import SynthImage, SynthQuestion, SynthStudy
from medvlm.synth.texture import layered_noise, ridges, smooth_noise

GENERATOR_VERSION = "1"

LEVELS = {1: "low", 2: "moderate", 3: "high"}  # cellularity words
PLEOMORPHISM = {1: "mild", 2: "moderate", 3: "marked"}
DIFFERENTIATION = {1: "well", 2: "moderately", 3: "poorly"}
NUCLEAR_SPACING_UM = {1: 15.0, 2: 12.0, 3: 9.5}
NUCLEAR_DIAMETER_UM = {1: 7.0, 2: 8.5, 3: 10.5}
SIZE_CV = {1: 0.08, 2: 0.18, 3: 0.3}
SHAPE_IRREGULARITY = {1: 0.03, 2: 0.06, 3: 0.09}
MITOSES = {1: (0, 1), 2: (2, 3), 3: (4, 6)}

# Optical density per unit stain (R, G, B), before per-slide jitter.
HAEMATOXYLIN_OD = np.array([0.65, 0.70, 0.29])
EOSIN_OD = np.array([0.12, 0.80, 0.40])


@dataclass
class PathConfig:
    """Options of the H&E tile generator.

    prevalence: {"tumour": probability}; the rest are benign tiles. grade_weights: relative frequency of
    grades 1, 2, 3 among tumours. microns_per_px: 1.0 shows a 128 um field at 128 px (about a 10x objective).
    """

    size_px: int = 128
    microns_per_px: float = 1.0
    prevalence: dict[str, float] = field(default_factory=lambda: {"tumour": 0.5})
    grade_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if not set(self.prevalence) <= {"tumour"}:
            raise ValueError(f"PathConfig.prevalence takes only the key 'tumour', got {sorted(self.prevalence)}")
        self.prevalence = {"tumour": float(self.prevalence.get("tumour", 0.0))}
        if not 0.0 <= float(self.prevalence["tumour"]) <= 1.0:
            raise ValueError(f"PathConfig.prevalence['tumour'] must be within [0, 1], got {self.prevalence['tumour']}")
        if len(self.grade_weights) != 3 or min(self.grade_weights) < 0 or sum(self.grade_weights) <= 0:
            raise ValueError(f"PathConfig.grade_weights needs 3 non-negative weights with a positive sum, "
                             f"got {self.grade_weights}")
        if not 0.25 <= self.microns_per_px <= 4.0 or self.size_px * self.microns_per_px < 64:
            raise ValueError(f"PathConfig needs microns_per_px in [0.25, 4] and a field of at least 64 um "
                             f"(size_px * microns_per_px), got {self.size_px} px at {self.microns_per_px} um/px")


@dataclass(frozen=True)
class TissueTruth:
    """Ground truth of one tile: benign (grade 0, scores 0) or tumour with its scores and mitotic count."""

    tumour: bool
    cellularity: int = 0
    pleomorphism: int = 0
    mitotic_score: int = 0
    mitoses: int = 0

    @property
    def grade(self) -> int:
        return grade_from_scores(self.cellularity, self.pleomorphism, self.mitotic_score) if self.tumour else 0

    @property
    def diagnosis(self) -> str:
        return f"invasive carcinoma, grade {self.grade}" if self.tumour else "benign tissue"


def grade_from_scores(cellularity: int, pleomorphism: int, mitotic_score: int) -> int:
    """Total of the three 1-3 scores: 3-5 -> grade 1, 6-7 -> grade 2, 8-9 -> grade 3."""
    total = cellularity + pleomorphism + mitotic_score
    return 1 if total <= 5 else 2 if total <= 7 else 3


def draw_truth(rng: np.random.Generator, config: PathConfig) -> TissueTruth:
    """Benign or tumour by prevalence; a tumour's grade by grade_weights, then scores (uniform) that give it."""
    if rng.random() >= float(config.prevalence["tumour"]):
        return TissueTruth(tumour=False)
    weights = np.asarray(config.grade_weights, dtype=np.float64)
    grade = int(rng.choice(3, p=weights / weights.sum())) + 1
    combos = [c for c in itertools.product((1, 2, 3), repeat=3) if grade_from_scores(*c) == grade]
    cellularity, pleomorphism, mitotic_score = combos[rng.integers(len(combos))]
    low, high = MITOSES[mitotic_score]
    return TissueTruth(tumour=True, cellularity=cellularity, pleomorphism=pleomorphism,
                       mitotic_score=mitotic_score, mitoses=int(rng.integers(low, high + 1)))


# ------------------------------------------------------------------------------------------------ image


@dataclass
class _Nuclei:
    """Parameters of N nuclei in pixels: centre (row, col), semi-axes, angle, outline harmonics, stain."""

    centre: np.ndarray  # (N, 2)
    semi_major: np.ndarray  # (N,)
    semi_minor: np.ndarray
    angle: np.ndarray
    irregularity: np.ndarray  # (N,) amplitude of outline harmonics
    stain: np.ndarray  # (N,) haematoxylin optical density

    @classmethod
    def concat(cls, parts: list[_Nuclei]) -> _Nuclei:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                     ("centre", "semi_major", "semi_minor", "angle", "irregularity", "stain")))

    def __len__(self) -> int:
        return len(self.semi_major)


def _stamp(rng: np.random.Generator, nuclei: _Nuclei, size: int, haematoxylin: np.ndarray) -> np.ndarray:
    """Paint nuclei into `haematoxylin` (S, S), in place (max over overlaps); return their mask (S, S) bool.

    All nuclei are drawn at once on (N, P, P) patches around their centres: an ellipse whose radius is perturbed
    by harmonics 2-5 (pleomorphic outlines), with a soft 1-px edge, granular chromatin and a darker rim.
    """
    mask = np.zeros(size * size, dtype=bool)
    n = len(nuclei)
    if n == 0:
        return mask.reshape(size, size)
    reach = float(np.max(nuclei.semi_major * (1 + 2.2 * nuclei.irregularity)))
    half = int(np.ceil(reach)) + 1
    offsets = np.arange(-half, half + 1, dtype=np.float32)
    base = np.rint(nuclei.centre).astype(np.intp)
    frac = (nuclei.centre - base).astype(np.float32)
    dy = offsets[None, :, None] - frac[:, 0, None, None]  # (N, P, 1)
    dx = offsets[None, None, :] - frac[:, 1, None, None]  # (N, 1, P)
    cos_a = np.cos(nuclei.angle).astype(np.float32)[:, None, None]
    sin_a = np.sin(nuclei.angle).astype(np.float32)[:, None, None]
    a = nuclei.semi_major.astype(np.float32)[:, None, None]
    b = nuclei.semi_minor.astype(np.float32)[:, None, None]
    u = (dx * cos_a + dy * sin_a) / a
    v = (dy * cos_a - dx * sin_a) / b
    rho = np.hypot(u, v)
    theta = np.arctan2(v, u)
    outline = np.ones_like(rho)
    coefficients = rng.standard_normal((n, 4, 2)).astype(np.float32) * nuclei.irregularity.astype(np.float32)[:, None, None]
    for k in range(2, 6):
        outline += coefficients[:, k - 2, 0, None, None] * np.cos(np.float32(k) * theta)
        outline += coefficients[:, k - 2, 1, None, None] * np.sin(np.float32(k) * theta)
    coverage = np.clip((outline - rho) * b + 0.5, 0.0, 1.0)
    rim = 1.0 + 0.3 * np.clip(rho / outline - 0.65, 0.0, 0.35) / 0.35
    chromatin = 0.8 + 0.4 * rng.random(coverage.shape, dtype=np.float32)
    value = coverage * rim * chromatin * nuclei.stain.astype(np.float32)[:, None, None]

    rows = base[:, 0, None, None] + offsets.astype(np.intp)[None, :, None]
    cols = base[:, 1, None, None] + offsets.astype(np.intp)[None, None, :]
    inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size) & (coverage > 0)
    flat = (rows * size + cols)[inside]
    np.maximum.at(haematoxylin.reshape(-1), flat, value[inside])
    mask[flat[coverage[inside] >= 0.5]] = True
    return mask.reshape(size, size)


def _random_nuclei(rng: np.random.Generator, centre: np.ndarray, diameter_px: float, size_cv: float,
                   elongation: tuple[float, float], irregularity: float, stain: tuple[float, float]) -> _Nuclei:
    n = len(centre)
    major = diameter_px / 2 * np.exp(rng.normal(0.0, size_cv, n))
    ratio = rng.uniform(*elongation, n)
    return _Nuclei(centre=centre, semi_major=major, semi_minor=major * ratio, angle=rng.uniform(0, np.pi, n),
                   irregularity=np.full(n, irregularity), stain=rng.uniform(*stain, n))


def _jittered_grid(rng: np.random.Generator, size: int, spacing_px: float, jitter: float) -> np.ndarray:
    """Points on a square grid `spacing_px` apart, each moved by up to jitter * spacing; (N, 2) (row, col)."""
    ticks = np.arange(spacing_px / 2, size, spacing_px)
    grid = np.stack(np.meshgrid(ticks, ticks, indexing="ij"), axis=-1).reshape(-1, 2)
    return grid + rng.uniform(-jitter, jitter, grid.shape) * spacing_px


def _stroma(rng: np.random.Generator, size: int, um: float) -> np.ndarray:
    """Eosin density (S, S) of wavy parallel collagen fibres with a few clear spaces."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    across = (yy * np.float32(np.cos(angle)) - xx * np.float32(np.sin(angle))) * np.float32(um)  # um
    wave = layered_noise(rng, (size, size), max(2, int(size * um / 50))) * np.float32(rng.uniform(6.0, 12.0))
    period = np.float32(rng.uniform(8.0, 14.0))
    fibres = ridges(np.sin(np.float32(2 * np.pi) * across / period + wave), 0.45)
    strength = 0.2 + 0.12 * smooth_noise(rng, (size, size), max(2, int(size * um / 30)))
    eosin = 0.45 + strength * fibres + 0.08 * smooth_noise(rng, (size, size), max(3, int(size * um / 15)))
    spaces = layered_noise(rng, (size, size), max(2, int(size * um / 40)))
    eosin *= np.clip((0.7 - spaces) * 6.0, 0.06, 1.0)  # clear gaps where the field is high
    return eosin.astype(np.float32)


def _benign(rng: np.random.Generator, size: int, um: float, eosin: np.ndarray, haematoxylin: np.ndarray
            ) -> list[_Nuclei]:
    """Glands (lumen, pale epithelium, basal nuclei in a row) in stroma with sparse fibroblasts."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    parts: list[_Nuclei] = []
    placed: list[tuple[float, float, float]] = []
    n_glands = int(rng.integers(1, 4)) if size * um >= 100 else 1
    for _ in range(n_glands * 4):  # a few tries each; glands may not overlap
        if len(placed) == n_glands:
            break
        lumen_a, lumen_b = rng.uniform(10, 24) / um, rng.uniform(6, 14) / um
        thickness = rng.uniform(10, 14) / um
        outer = lumen_a + thickness
        centre = rng.uniform(0.1, 0.9, 2) * size
        if any(np.hypot(*(centre - (r, c))) < outer + o for r, c, o in placed):
            continue
        placed.append((centre[0], centre[1], outer))
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - np.float32(centre[0]), xx - np.float32(centre[1])
        u = dx * np.float32(np.cos(angle)) + dy * np.float32(np.sin(angle))
        v = dy * np.float32(np.cos(angle)) - dx * np.float32(np.sin(angle))
        # distance-like coordinate: 1 on the lumen outline, grows outwards by thickness
        lumen_r = np.hypot(u / lumen_a, v / lumen_b)
        depth = (lumen_r - 1.0) * min(lumen_a, lumen_b)
        epithelium = (depth >= 0) & (depth < thickness)
        eosin[lumen_r < 1.0] = 0.03
        eosin[epithelium] = 0.3 + 0.05 * eosin[epithelium]
        haematoxylin[epithelium] += 0.08
        # nuclei in a row near the basement membrane, long axis across the row
        perimeter = np.pi * (3 * (lumen_a + lumen_b) - np.sqrt((3 * lumen_a + lumen_b) * (lumen_a + 3 * lumen_b)))
        n = max(6, int(perimeter / (6.5 / um)))
        t = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 2 * np.pi)
        ring = 1.0 + 0.7 * thickness / min(lumen_a, lumen_b)
        lu, lv = lumen_a * ring * np.cos(t), lumen_b * ring * np.sin(t)
        rows = centre[0] + lu * np.sin(angle) + lv * np.cos(angle)
        cols = centre[1] + lu * np.cos(angle) - lv * np.sin(angle)
        nuclei = _random_nuclei(rng, np.stack([rows, cols], 1), 6.0 / um, 0.05, (0.55, 0.7), 0.02, (0.9, 1.1))
        nuclei.angle = np.arctan2(np.sin(t) * lumen_a, np.cos(t) * lumen_b) + angle  # radial long axis
        parts.append(nuclei)
    # stroma: spindle fibroblasts and a few small round lymphocytes
    n_fibro = int(rng.poisson(size * size * um * um / 700))
    parts.append(_random_nuclei(rng, rng.uniform(0, size, (n_fibro, 2)), 7.0 / um, 0.1, (0.25, 0.35), 0.02,
                                (1.0, 1.3)))
    n_lympho = int(rng.poisson(size * size * um * um / 2500))
    parts.append(_random_nuclei(rng, rng.uniform(0, size, (n_lympho, 2)), 4.0 / um, 0.05, (0.9, 1.0), 0.01,
                                (1.4, 1.7)))
    nuclei = _Nuclei.concat(parts)
    # drop stroma nuclei that fall into lumens
    keep = eosin[np.clip(nuclei.centre[:, 0].astype(int), 0, size - 1),
                 np.clip(nuclei.centre[:, 1].astype(int), 0, size - 1)] > 0.05
    return [_Nuclei(*(getattr(nuclei, f)[keep] for f in
                      ("centre", "semi_major", "semi_minor", "angle", "irregularity", "stain")))]


def _tumour(rng: np.random.Generator, truth: TissueTruth, size: int, um: float, eosin: np.ndarray,
            haematoxylin: np.ndarray) -> tuple[list[_Nuclei], np.ndarray, _Nuclei]:
    """Sheets of atypical cells over most of the tile; returns (nuclei, tumour mask, mitotic figures)."""
    area = layered_noise(rng, (size, size), max(2, int(size * um / 45)))
    tumour = area > np.quantile(area, 1.0 - rng.uniform(0.55, 0.9))
    eosin[tumour] = 0.38 + 0.1 * eosin[tumour]
    haematoxylin[tumour] += 0.12
    p = truth.pleomorphism
    grid = _jittered_grid(rng, size, NUCLEAR_SPACING_UM[truth.cellularity] / um, 0.3)
    grid = grid[tumour[np.clip(grid[:, 0].astype(int), 0, size - 1), np.clip(grid[:, 1].astype(int), 0, size - 1)]]
    # mitotic figures replace cells whole inside the tile, so that each one is seen and counted
    margin = 5.0 / um
    inner = np.flatnonzero(np.all((grid >= margin) & (grid <= size - margin), axis=1))
    n_mitoses = truth.mitoses
    if len(inner) < n_mitoses:  # a tiny tumour area: seed extra cells anywhere well inside it
        core = tumour.copy()
        core[:int(np.ceil(margin))], core[size - int(np.ceil(margin)):] = False, False
        core[:, :int(np.ceil(margin))], core[:, size - int(np.ceil(margin)):] = False, False
        extra = np.argwhere(core)[rng.choice(int(core.sum()), n_mitoses - len(inner), replace=False)] + 0.5
        inner = np.concatenate([inner, np.arange(len(grid), len(grid) + len(extra))])
        grid = np.concatenate([grid, extra])
    chosen = rng.permutation(inner)[:n_mitoses]
    mitotic_centres, grid = grid[chosen], np.delete(grid, chosen, axis=0)
    spread = (1.0 - 0.12 * p, 1.0 + 0.15 * p)  # hyperchromasia varies more with pleomorphism
    nuclei = _random_nuclei(rng, grid, NUCLEAR_DIAMETER_UM[p] / um, SIZE_CV[p], (0.6 - 0.05 * p, 0.95),
                            SHAPE_IRREGULARITY[p], spread)
    # mitotic figures: a dark ragged bar of condensed chromatin (metaphase plate) in a clear halo
    n = len(mitotic_centres)
    figures = _Nuclei(centre=mitotic_centres, semi_major=rng.uniform(4.0, 5.5, n) / um,
                      semi_minor=rng.uniform(1.2, 1.8, n) / um, angle=rng.uniform(0, np.pi, n),
                      irregularity=np.full(n, 0.2), stain=rng.uniform(2.2, 2.6, n))
    reach = int(np.ceil(6.0 / um))
    for row, col in mitotic_centres:
        top, left = max(int(row) - reach, 0), max(int(col) - reach, 0)
        rows = np.arange(top, min(int(row) + reach + 1, size), dtype=np.float32)[:, None]
        cols = np.arange(left, min(int(col) + reach + 1, size), dtype=np.float32)[None, :]
        halo = np.hypot(rows - np.float32(row), cols - np.float32(col)) < 6.0 / um
        window = (slice(top, top + halo.shape[0]), slice(left, left + halo.shape[1]))
        eosin[window][halo] *= 0.35
        haematoxylin[window][halo] *= 0.3
    return [nuclei], tumour, figures


def _to_rgb(rng: np.random.Generator, haematoxylin: np.ndarray, eosin: np.ndarray) -> np.ndarray:
    """Beer-Lambert: RGB = 255 exp(-(H od_H + E od_E)), with slide-specific stain vectors and strength."""
    od_h = HAEMATOXYLIN_OD * rng.uniform(0.9, 1.1, 3) * rng.uniform(0.85, 1.15)
    od_e = EOSIN_OD * rng.uniform(0.9, 1.1, 3) * rng.uniform(0.8, 1.2)
    optical_density = haematoxylin[..., None] * od_h.astype(np.float32) + eosin[..., None] * od_e.astype(np.float32)
    rgb = 255.0 * np.exp(-optical_density)
    rgb += (rng.random(rgb.shape, dtype=np.float32) - np.float32(0.5)) * np.float32(6.0)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def render_tile(rng: np.random.Generator, truth: TissueTruth, config: PathConfig
                ) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """(RGB uint8 (S, S, 3), masks name -> (S, S) bool, number of nuclei drawn) for one tile."""
    size, um = int(config.size_px), float(config.microns_per_px)
    eosin = _stroma(rng, size, um)
    haematoxylin = np.full((size, size), 0.04, dtype=np.float32)
    masks: dict[str, np.ndarray] = {}
    if truth.tumour:
        parts, masks["tumour"], figures = _tumour(rng, truth, size, um, eosin, haematoxylin)
    else:
        parts, figures = _benign(rng, size, um, eosin, haematoxylin), None
    nuclei = _Nuclei.concat(parts)
    masks["nuclei"] = _stamp(rng, nuclei, size, haematoxylin)
    if figures is not None and len(figures):
        masks["mitoses"] = _stamp(rng, figures, size, haematoxylin)
        masks["nuclei"] |= masks["mitoses"]
    return _to_rgb(rng, haematoxylin, eosin), masks, len(nuclei) + (len(figures) if figures is not None else 0)


# ------------------------------------------------------------------------------------------------- text

REPORT_PROMPTS = (
    "Describe the histology of this H&E-stained tile.",
    "Write a pathology report for this H&E image.",
    "Describe this tissue section and give the diagnosis.",
)
NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six")


def tile_report(rng: np.random.Generator, truth: TissueTruth) -> str:
    """FINDINGS and IMPRESSION from varied templates; cellularity, pleomorphism and mitoses are always stated."""
    if not truth.tumour:
        findings = [
            rng.choice(["Benign glands lined by a single layer of small uniform nuclei within fibrous stroma.",
                        "The section shows regular glands with basally placed, uniform nuclei in a collagenous stroma.",
                        "Normal glandular architecture with evenly spaced small round nuclei."]),
            rng.choice(["Cellularity is low.", "The tissue is of low cellularity."]),
            rng.choice(["There is no nuclear pleomorphism.", "No nuclear atypia."]),
            rng.choice(["No mitotic figures are seen.", "Mitoses are absent."]),
        ]
        impression = rng.choice(["Benign tissue; no evidence of malignancy.", "No tumour identified.",
                                 "Benign tissue without atypia."])
        return f"FINDINGS: {' '.join(findings)}\nIMPRESSION: {impression}"
    level, pleo = LEVELS[truth.cellularity], PLEOMORPHISM[truth.pleomorphism]
    count = truth.mitoses
    mitoses = ("No mitotic figures are seen." if count == 0 else
               rng.choice([f"{NUMBER_WORDS[count].capitalize()} mitotic figure{'s are' if count > 1 else ' is'} seen.",
                           f"Mitotic figures: {count} in this field."]))
    findings = [
        rng.choice([f"Sheets of atypical epithelial cells infiltrate the stroma with {level} cellularity.",
                    f"The tile is occupied by infiltrating tumour cells; cellularity is {level}.",
                    f"Invasive tumour cells in solid sheets, {level} cellularity."]),
        rng.choice([f"Nuclei are enlarged with {pleo} pleomorphism.",
                    f"There is {pleo} nuclear pleomorphism.",
                    f"Nuclear pleomorphism is {pleo}."]),
        mitoses,
    ]
    grade, diff = truth.grade, DIFFERENTIATION[truth.grade]
    impression = rng.choice([f"Invasive carcinoma, grade {grade} ({diff} differentiated).",
                             f"Grade {grade} invasive carcinoma, {diff} differentiated.",
                             f"Carcinoma, {diff} differentiated (grade {grade})."])
    return f"FINDINGS: {' '.join(findings)}\nIMPRESSION: {impression}"


def tile_questions(rng: np.random.Generator, truth: TissueTruth) -> list[SynthQuestion]:
    """Closed and open questions whose answers follow from the tile's ground truth."""
    def yes(value: bool) -> str:
        return "yes" if value else "no"

    def pick(options: list[str]) -> str:
        return str(rng.choice(options))

    questions = [
        SynthQuestion(pick(["Is tumour present?", "Does this tile contain invasive carcinoma?", "Is this malignant?"]),
                      yes(truth.tumour), "closed", "tumour"),
        SynthQuestion(pick(["Are mitotic figures present?", "Are there any mitoses?"]),
                      yes(truth.mitoses > 0), "closed", "mitoses"),
        SynthQuestion(pick(["Is there marked nuclear pleomorphism?", "Are the nuclei markedly pleomorphic?"]),
                      yes(truth.pleomorphism == 3), "closed", "marked_pleomorphism"),
        SynthQuestion(pick(["What is the diagnosis?", "What does this tile show?"]),
                      "invasive carcinoma" if truth.tumour else "benign tissue", "open", "tumour"),
        SynthQuestion(pick(["How many mitotic figures are visible?", "How many mitoses are there?"]),
                      str(truth.mitoses), "open", "mitoses"),
        SynthQuestion(pick(["What is the cellularity?", "How cellular is the tissue?"]),
                      LEVELS[truth.cellularity] if truth.tumour else "low", "open", "cellularity"),
        SynthQuestion(pick(["What is the degree of nuclear pleomorphism?", "How pleomorphic are the nuclei?"]),
                      PLEOMORPHISM[truth.pleomorphism] if truth.tumour else "none", "open", "pleomorphism"),
    ]
    if truth.tumour:
        questions.append(SynthQuestion(pick(["What is the tumour grade?", "What grade is the carcinoma?"]),
                                       f"grade {truth.grade}", "open", "grade"))
        questions.append(SynthQuestion(pick(["Is this a high-grade tumour?", "Is the carcinoma poorly differentiated?"]),
                                       yes(truth.grade == 3), "closed", "grade"))
    return questions


# ------------------------------------------------------------------------------------------------ study


def generate_study(rng: np.random.Generator, index: int, config: PathConfig) -> SynthStudy:
    """One H&E tile (one synthetic patient): image, nuclei/tumour/mitosis masks, truth, report and questions."""
    # independent streams: changing the text never changes the pixels, and vice versa
    truth_rng, image_rng, text_rng, misc_rng = rng.spawn(4)
    truth = draw_truth(truth_rng, config)
    pixels, masks, n_nuclei = render_tile(image_rng, truth, config)
    mm_per_px = config.microns_per_px / 1000.0
    acquired = (np.datetime64("2022-01-01") + np.timedelta64(int(misc_rng.integers(0, 730)), "D")).astype(str)
    image = SynthImage(role="current", pixels=pixels, kind="rgb", spacing_mm=(mm_per_px, mm_per_px), masks=masks,
                       acquired=acquired.replace("-", ""))
    area_mm2 = (config.size_px * mm_per_px) ** 2
    findings = [
        {"name": "nuclei", "present": True, "mask": "nuclei", "count": n_nuclei},
        {"name": "tumour", "present": truth.tumour, "grade": truth.grade,
         "mask": "tumour" if truth.tumour else None},
        {"name": "mitoses", "present": truth.mitoses > 0, "count": truth.mitoses,
         "mask": "mitoses" if "mitoses" in masks else None},
        {"name": "marked_pleomorphism", "present": truth.pleomorphism == 3},
        {"name": "high_cellularity", "present": truth.cellularity == 3},
    ]
    labels = {"kind": "path", "present": {f["name"]: f["present"] for f in findings[1:]},
              "diagnosis": truth.diagnosis, "tumour": truth.tumour, "grade": truth.grade,
              "cellularity_score": truth.cellularity, "pleomorphism_score": truth.pleomorphism,
              "mitotic_score": truth.mitotic_score, "mitoses": truth.mitoses, "nuclei": n_nuclei,
              "nuclei_per_mm2": round(n_nuclei / area_mm2, 1)}
    return SynthStudy(
        study_id=f"path{index:06d}", patient_id=f"pathpat{index:06d}", images=[image], findings=findings,
        labels=labels, report=tile_report(text_rng, truth), questions=tile_questions(text_rng, truth),
        report_prompt=str(text_rng.choice(REPORT_PROMPTS)),
    )
