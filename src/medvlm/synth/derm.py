"""Synthetic dermoscopy: one pigmented lesion on skin, graded by ABCD features, with its mask and text.

Each study draws a diagnosis from `DermConfig.prevalence`, then ABCD features compatible with it:
  A  asymmetry: number of axes (0, 1, 2) about which shape and colour are not mirror-symmetric -> 0-2 points
  B  border: regular (smooth, fading) or irregular (notched, abrupt pigment cut-off)           -> 0 or 2 points
  C  colour: number of colours among light brown, dark brown, black, blue-grey, red, white      -> colours - 1
  D  diameter: greatest diameter of the lesion in whole mm; more than 6 mm                      -> 1 point
ABCD total (0-10) -> diagnosis: <= 2 benign nevus, 3-4 atypical nevus, >= 5 melanoma (a synthetic rule in the
spirit of the dermoscopic ABCD rule, not a clinical one).

The image is RGB uint8 (size_px, size_px, 3) with spacing field_of_view_mm / size_px; it has skin tone, skin
furrows and erythema, optional hairs and dermoscope vignetting. Mask "lesion" is the lesion outline (hairs over
the lesion stay inside it). Everything is drawn from the study's rng alone.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from medvlm.synth.base import SynthImage, SynthQuestion, SynthStudy
from medvlm.synth.texture import noise_lattice, ridges, sample_lattice, smooth_noise

GENERATOR_VERSION = "1"

DIAGNOSES = ("benign nevus", "atypical nevus", "melanoma")
# sRGB of each dermoscopic colour, listed from the lesion's centre to its periphery (the order regions take).
COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (38, 30, 32),
    "blue-grey": (98, 112, 138),
    "dark brown": (102, 60, 40),
    "white": (226, 214, 208),
    "red": (186, 78, 76),
    "light brown": (172, 118, 78),
}
# How often each colour is chosen when a lesion has several (browns dominate, as in real lesions).
COLOUR_WEIGHTS = {"light brown": 4.0, "dark brown": 4.0, "black": 2.0, "blue-grey": 1.5, "red": 1.0, "white": 1.0}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")
LARGE_DIAMETER_MM = 6  # D scores a point above this


@dataclass
class DermConfig:
    """Options of the dermoscopy generator.

    prevalence: probability of "atypical_nevus" and "melanoma" (a name left out has probability 0); the rest are
    benign nevi (sum must be <= 1).
    diameter_mm: (min, max) greatest lesion diameter in whole mm; max at most 0.7 * field_of_view_mm.
    """

    size_px: int = 128
    field_of_view_mm: float = 20.0
    prevalence: dict[str, float] = field(default_factory=lambda: {"atypical_nevus": 0.3, "melanoma": 0.2})
    diameter_mm: tuple[int, int] = (3, 14)
    hair_probability: float = 0.4
    vignette_probability: float = 0.7

    def __post_init__(self) -> None:
        unknown = set(self.prevalence) - {"atypical_nevus", "melanoma"}
        if unknown:
            raise ValueError(f"DermConfig.prevalence: unknown {sorted(unknown)}; known: atypical_nevus, melanoma")
        self.prevalence = {name: float(self.prevalence.get(name, 0.0)) for name in ("atypical_nevus", "melanoma")}
        if sum(self.prevalence.values()) > 1.0 + 1e-9:
            raise ValueError(f"DermConfig.prevalence must sum to at most 1 (the rest are benign), got {self.prevalence}")
        low, high = (int(v) for v in self.diameter_mm)
        if not 1 <= low <= high <= 0.7 * self.field_of_view_mm:
            raise ValueError(f"DermConfig.diameter_mm must satisfy 1 <= min <= max <= 0.7 * field_of_view_mm "
                             f"({0.7 * self.field_of_view_mm:g}), got {self.diameter_mm}")
        if self.size_px < 32:
            raise ValueError(f"DermConfig.size_px must be at least 32, got {self.size_px}")


@dataclass(frozen=True)
class DermLesion:
    """Ground truth of one lesion: the ABCD features, their points and the diagnosis they give."""

    asymmetry_axes: int
    border_irregular: bool
    colours: tuple[str, ...]
    diameter_mm: int

    @property
    def points(self) -> dict[str, int]:
        return {"A": self.asymmetry_axes, "B": 2 * self.border_irregular, "C": len(self.colours) - 1,
                "D": int(self.diameter_mm > LARGE_DIAMETER_MM)}

    @property
    def score(self) -> int:
        return sum(self.points.values())

    @property
    def diagnosis(self) -> str:
        return diagnosis_from_score(self.score)


def diagnosis_from_score(score: int) -> str:
    """The synthetic ABCD rule: total <= 2 benign nevus, 3-4 atypical nevus, >= 5 melanoma."""
    return "benign nevus" if score <= 2 else "atypical nevus" if score <= 4 else "melanoma"


# ------------------------------------------------------------------------------------------ drawing truth

_ASYMMETRY_PRIOR = (0.5, 0.3, 0.2)
_IRREGULAR_PRIOR = 0.4
_COLOUR_COUNT_PRIOR = (0.3, 0.3, 0.2, 0.1, 0.06, 0.04)  # 1..6 colours
_LARGE_PRIOR = 0.5


def draw_lesion(rng: np.random.Generator, diagnosis: str, config: DermConfig) -> DermLesion:
    """ABCD features whose score gives `diagnosis`, weighted by priors over each feature."""
    low, high = (int(v) for v in config.diameter_mm)
    sizes = {False: low <= LARGE_DIAMETER_MM, True: high > LARGE_DIAMETER_MM}  # which D bins exist
    combos, weights = [], []
    for a, b, c, d in itertools.product(range(3), (False, True), range(1, 7), (False, True)):
        if not sizes[d] or diagnosis_from_score(a + 2 * b + (c - 1) + d) != diagnosis:
            continue
        combos.append((a, b, c, d))
        weights.append(_ASYMMETRY_PRIOR[a] * (_IRREGULAR_PRIOR if b else 1 - _IRREGULAR_PRIOR)
                       * _COLOUR_COUNT_PRIOR[c - 1] * (_LARGE_PRIOR if d else 1 - _LARGE_PRIOR))
    if not combos:
        raise ValueError(f"no ABCD features give {diagnosis!r} with diameter_mm={config.diameter_mm}")
    weights = np.asarray(weights) / np.sum(weights)
    a, b, c, d = combos[rng.choice(len(combos), p=weights)]
    diameter = int(rng.integers(LARGE_DIAMETER_MM + 1, high + 1)) if d else int(rng.integers(low, min(high, 6) + 1))
    names = list(COLOUR_WEIGHTS)
    p = np.array([COLOUR_WEIGHTS[n] for n in names])
    chosen = rng.choice(len(names), size=c, replace=False, p=p / p.sum())
    colours = tuple(n for n in COLOURS if n in {names[i] for i in chosen})  # centre -> periphery order
    return DermLesion(asymmetry_axes=int(a), border_irregular=bool(b), colours=colours, diameter_mm=diameter)


# ------------------------------------------------------------------------------------------------ image


def _harmonics(rng: np.random.Generator, lesion: DermLesion) -> list[tuple[int, float, float]]:
    """(k, cos amplitude, sin amplitude) of the outline r(t) = 1 + sum a cos kt + b sin kt.

    Mirror symmetry about the lesion's x axis needs sin terms to vanish; about its y axis too, odd k must
    vanish. Asymmetry axes 0/1/2 pick which terms are allowed; the border adds fine terms under the same rule.
    """
    axes = lesion.asymmetry_axes
    terms = [(2, rng.uniform(0.0, 0.22), 0.0), (4, rng.uniform(-0.04, 0.04), 0.0)]
    if axes >= 1:
        terms += [(1, rng.uniform(0.12, 0.22), 0.0), (3, rng.uniform(-0.08, 0.08), 0.0)]
    if axes == 2:
        terms += [(1, 0.0, rng.choice((-1, 1)) * rng.uniform(0.12, 0.22)), (3, 0.0, rng.uniform(-0.08, 0.08))]
    fine = range(5, 15) if lesion.border_irregular else range(3, 7)
    scale = rng.uniform(0.035, 0.06) if lesion.border_irregular else 0.012
    for k in fine:
        if axes == 0 and k % 2:
            continue
        amplitude = scale * rng.standard_normal() * (5.0 / k) ** 0.5
        if axes == 2:
            phase = rng.uniform(0, 2 * np.pi)
            terms.append((k, amplitude * np.cos(phase), amplitude * np.sin(phase)))
        else:
            terms.append((k, amplitude, 0.0))
    return terms


def _outline(terms: list[tuple[int, float, float]], theta: np.ndarray) -> np.ndarray:
    r = np.ones_like(theta)
    for k, a, b in terms:
        if a:
            r += np.float32(a) * np.cos(np.float32(k) * theta)
        if b:
            r += np.float32(b) * np.sin(np.float32(k) * theta)
    return np.maximum(r, np.float32(0.3))


def render_lesion(rng: np.random.Generator, lesion: DermLesion, config: DermConfig) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 (S, S, 3), lesion mask bool (S, S)) for one lesion on skin."""
    size = int(config.size_px)
    mm_per_px = config.field_of_view_mm / size
    yy = np.arange(size, dtype=np.float32)[:, None]  # (S, 1) rows
    xx = np.arange(size, dtype=np.float32)[None, :]  # (1, S) columns

    # Outline: scale so the greatest diameter (max distance between outline points) is diameter_mm.
    terms = _harmonics(rng, lesion)
    t = np.linspace(0, 2 * np.pi, 180, endpoint=False)
    r = _outline(terms, t)
    points = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)  # (180, 2)
    directions = np.stack([np.cos(t[:90]), np.sin(t[:90])])  # (2, 90): every 2 degrees over a half turn
    projections = points @ directions
    feret = float(np.max(projections.max(axis=0) - projections.min(axis=0)))
    radius_px = lesion.diameter_mm / mm_per_px / feret
    reach = float(r.max() * radius_px)
    jitter = max(0.0, 0.45 * size - reach)
    centre_row, centre_col = (float(c) for c in size / 2 + rng.uniform(-jitter, jitter, size=2) * 0.6)
    angle = rng.uniform(0, 2 * np.pi)
    dy, dx = yy - np.float32(centre_row), xx - np.float32(centre_col)
    # lesion frame (float32 throughout): u along its first symmetry axis, v across, in units of radius_px
    cos_a, sin_a, scale = (np.float32(x) for x in (np.cos(angle), np.sin(angle), 1.0 / radius_px))
    u = (dx * cos_a + dy * sin_a) * scale
    v = (dy * cos_a - dx * sin_a) * scale
    rho = np.hypot(u, v)
    outline = _outline(terms, np.arctan2(v, u))
    rho_n = rho / outline  # 1 on the outline
    mask = rho_n < 1.0

    # Colour regions: rank pixels by a field that is radial, plus gradients and noise obeying the symmetry class.
    # Noise is sampled at mirrored coordinates (|u|, |v|) along each axis the lesion is symmetric about.
    axes = lesion.asymmetry_axes
    lattice = noise_lattice(rng, (6, 6))
    nu = np.abs(u) if axes == 0 else u
    nv = v if axes == 2 else np.abs(v)
    pigment_field = rho_n + 0.35 * sample_lattice(lattice, 2.0 * nu + 3.5, 2.0 * nv + 3.5)
    if axes >= 1:
        pigment_field += rng.choice((-1, 1)) * rng.uniform(0.5, 0.8) * u
    if axes == 2:
        pigment_field += rng.choice((-1, 1)) * rng.uniform(0.5, 0.8) * v
    n_colours = len(lesion.colours)
    # equal-area regions: cut the field at its quantiles inside the lesion
    ranked = np.sort(pigment_field[mask])
    cuts = ranked[(np.arange(1, n_colours) * ranked.size) // n_colours] if ranked.size else ranked[:0]
    region = np.searchsorted(cuts, pigment_field, side="right")
    palette = np.array([COLOURS[c] for c in lesion.colours], dtype=np.float32)
    lesion_rgb = palette[region]
    network = ridges(smooth_noise(rng, (size, size), max(4, size // 7)), 0.12)
    mottle = smooth_noise(rng, (size, size), max(3, size // 16))
    lesion_rgb *= (1.0 - rng.uniform(0.1, 0.25) * network + 0.08 * mottle)[..., None]

    edge_px = 0.12 * radius_px if not lesion.border_irregular else 0.6
    alpha = np.clip(0.5 + (1.0 - rho_n) * outline * radius_px / edge_px, 0.0, 1.0)
    alpha = (alpha * alpha * (3 - 2 * alpha) * rng.uniform(0.85, 0.95))[..., None]

    skin = _skin(rng, size)
    image = skin * (1 - alpha) + lesion_rgb * alpha
    image = _hairs(rng, image, config)
    image = _vignette(rng, image, config, np.hypot(yy + 0.5 - size / 2, xx + 0.5 - size / 2) / np.float32(size / 2))
    image += (rng.random(image.shape, dtype=np.float32) - np.float32(0.5)) * np.float32(6.0)  # sensor noise, sd 1.7
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask


def _skin(rng: np.random.Generator, size: int) -> np.ndarray:
    """Skin background (S, S, 3) float32: tone from light to dark, erythema, brightness and furrows."""
    light, dark = np.array([236, 194, 176], np.float32), np.array([150, 102, 78], np.float32)
    tone = light + (dark - light) * np.float32(rng.beta(1.6, 2.4))
    erythema = smooth_noise(rng, (size, size), 3) * np.float32(rng.uniform(4, 14))
    fine = smooth_noise(rng, (size, size), max(3, size // 8))
    shade = (1 + 0.04 * smooth_noise(rng, (size, size), 4) - 0.015 * fine
             - np.float32(rng.uniform(0.015, 0.04)) * ridges(fine, 0.05))  # furrows where the fine field crosses 0
    return shade[..., None] * tone + erythema[..., None] * np.array([1.0, -0.6, -0.4], np.float32)


def _hairs(rng: np.random.Generator, image: np.ndarray, config: DermConfig) -> np.ndarray:
    """Dark curved hairs (quadratic Bezier curves) drawn over the image, anti-aliased."""
    if rng.random() >= config.hair_probability:
        return image
    size = image.shape[0]
    n_hairs = 1 + int(rng.poisson(3))
    width = rng.uniform(0.8, 1.6) * size / 128
    points = []
    for _ in range(n_hairs):
        start = rng.uniform(-0.1, 1.1, 2) * size
        direction = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.4, 1.4) * size
        end = start + length * np.array([np.sin(direction), np.cos(direction)])
        bend = (start + end) / 2 + rng.normal(0, 0.15 * length, 2)
        steps = np.linspace(0, 1, int(1.5 * length) + 2)[:, None]  # about 0.7 px apart
        points.append((1 - steps) ** 2 * start + 2 * (1 - steps) * steps * bend + steps**2 * end)
    curve = np.concatenate(points).astype(np.float32)  # (N, 2) as (row, col)
    reach = int(np.ceil(width / 2 + 0.5))
    offsets = np.arange(-reach, reach + 1)
    base = np.floor(curve).astype(np.intp)
    coverage = np.zeros(size * size, np.float32)
    for oy in offsets:
        for ox in offsets:
            row, col = base[:, 0] + oy, base[:, 1] + ox
            distance = np.hypot(row + 0.5 - curve[:, 0], col + 0.5 - curve[:, 1])
            weight = np.clip(width / 2 + 0.5 - distance, 0, 1)
            keep = (row >= 0) & (row < size) & (col >= 0) & (col < size) & (weight > 0)
            np.maximum.at(coverage, row[keep] * size + col[keep], weight[keep])
    coverage = coverage.reshape(size, size, 1) * rng.uniform(0.8, 0.95)
    hair_rgb = np.array([48, 36, 30], np.float32) * rng.uniform(0.6, 1.2)
    return image * (1 - coverage) + hair_rgb * coverage


def _vignette(rng: np.random.Generator, image: np.ndarray, config: DermConfig, r: np.ndarray) -> np.ndarray:
    """Darker periphery, and sometimes the round field stop of a contact dermoscope (black corners).

    r: (S, S) distance of each pixel from the image centre in half-widths.
    """
    if rng.random() >= config.vignette_probability:
        return image
    size = image.shape[0]
    factor = 1 - rng.uniform(0.1, 0.35) * np.minimum(r, 1.5) ** 4 / 1.5**4
    if rng.random() < 0.5:
        stop = rng.uniform(1.0, 1.3)
        factor *= np.clip((stop - r) * size / 4, 0.04, 1.0)
    return image * factor[..., None].astype(np.float32)


# ------------------------------------------------------------------------------------------------- text

REPORT_PROMPTS = (
    "Describe the dermoscopic features of this skin lesion.",
    "Write the dermoscopy report for this lesion.",
    "Describe this dermoscopy image and give the most likely diagnosis.",
)


def _colour_list(colours: tuple[str, ...]) -> str:
    names = list(colours)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def lesion_report(rng: np.random.Generator, lesion: DermLesion) -> str:
    """FINDINGS and IMPRESSION from varied templates; every ABCD feature is stated, present or absent."""
    d = lesion.diameter_mm
    opening = rng.choice([
        f"Dermoscopy shows a pigmented lesion measuring {d} mm.",
        f"Dermoscopic image of a pigmented skin lesion, {d} mm in greatest diameter.",
        f"A {d} mm melanocytic lesion is seen on dermoscopy.",
        f"There is a pigmented lesion with a greatest diameter of {d} mm.",
    ])
    asymmetry = {
        0: ["The lesion is symmetric in shape and colour.", "Shape and colour are symmetric about both axes.",
            "No asymmetry of shape or colour."],
        1: ["It is asymmetric about one axis.", "Shape and colour are asymmetric along one axis.",
            "There is asymmetry in one axis."],
        2: ["It is asymmetric about both axes.", "Shape and colour are asymmetric along two axes.",
            "There is asymmetry in two axes."],
    }[lesion.asymmetry_axes]
    border = (["The border is irregular with notches and an abrupt cut-off of pigment.",
               "Borders are irregular and sharply demarcated.", "The outline is irregular."]
              if lesion.border_irregular else
              ["The border is regular and smooth.", "Borders are regular with a gradual fade of pigment.",
               "The outline is smooth and regular."])
    n = len(lesion.colours)
    colours = _colour_list(lesion.colours)
    if n == 1:
        colour = rng.choice([f"A single colour is present ({colours}).", f"It is uniformly {colours}.",
                             f"One colour only: {colours}; no colour variegation."])
    else:
        word = NUMBER_WORDS[n]
        colour = rng.choice([f"{word.capitalize()} colours are present: {colours}.",
                             f"There is colour variegation with {word} colours ({colours}).",
                             f"It shows {word} colours: {colours}."])
    findings = " ".join([opening, rng.choice(asymmetry), rng.choice(border), colour])
    impression = {
        "benign nevus": ["Benign melanocytic nevus.", "Findings are consistent with a benign nevus.",
                         "Benign-appearing nevus; no dermoscopic features of melanoma."],
        "atypical nevus": ["Atypical nevus; short-term dermoscopic follow-up is advised.",
                           "Findings suggest an atypical (dysplastic) nevus.",
                           "Atypical melanocytic nevus; monitoring is recommended."],
        "melanoma": ["Features suspicious for melanoma; excision is recommended.",
                     "Findings are concerning for melanoma.", "Suspected melanoma; recommend excisional biopsy."],
    }[lesion.diagnosis]
    return f"FINDINGS: {findings}\nIMPRESSION: {rng.choice(impression)}"


def lesion_questions(rng: np.random.Generator, lesion: DermLesion) -> list[SynthQuestion]:
    """Closed (yes/no) and open questions whose answers follow from the lesion's ground truth.

    A closed question's topic is the finding (labels["present"] key) it asks about.
    """
    def yes(value: bool) -> str:
        return "yes" if value else "no"

    def pick(options: list[str]) -> str:
        return str(rng.choice(options))

    n = len(lesion.colours)
    return [
        SynthQuestion(pick(["Is the lesion asymmetric?", "Does the lesion show asymmetry?"]),
                      yes(lesion.asymmetry_axes > 0), "closed", "asymmetry"),
        SynthQuestion(pick(["Is the border irregular?", "Does the lesion have an irregular border?"]),
                      yes(lesion.border_irregular), "closed", "irregular_border"),
        SynthQuestion(pick(["Does the lesion show more than one colour?", "Is there colour variegation?"]),
                      yes(n > 1), "closed", "colour_variegation"),
        SynthQuestion(pick(["Is the diameter greater than 6 mm?", "Is the lesion larger than 6 mm?"]),
                      yes(lesion.diameter_mm > LARGE_DIAMETER_MM), "closed", "large_diameter"),
        SynthQuestion(pick(["Is this lesion suspicious for melanoma?", "Is melanoma likely?"]),
                      yes(lesion.diagnosis == "melanoma"), "closed", "melanoma"),
        SynthQuestion(pick(["About how many axes is the lesion asymmetric?", "How many axes of asymmetry are there?"]),
                      str(lesion.asymmetry_axes), "open", "asymmetry"),
        SynthQuestion(pick(["How many colours does the lesion show?", "How many colours are present?"]),
                      str(n), "open", "colour"),
        SynthQuestion(pick(["Which colours are present?", "What colours does the lesion contain?"]),
                      _colour_list(lesion.colours), "open", "colour"),
        SynthQuestion(pick(["What is the greatest diameter of the lesion?", "How large is the lesion?"]),
                      f"{lesion.diameter_mm} mm", "open", "diameter"),
        SynthQuestion(pick(["What is the most likely diagnosis?", "What is the diagnosis?"]),
                      lesion.diagnosis, "open", "diagnosis"),
    ]


# ------------------------------------------------------------------------------------------------ study


def generate_study(rng: np.random.Generator, index: int, config: DermConfig) -> SynthStudy:
    """One dermoscopy study (one synthetic patient): image, lesion mask, ABCD truth, report and questions."""
    # independent streams: changing the text never changes the pixels, and vice versa
    truth_rng, image_rng, text_rng, misc_rng = rng.spawn(4)
    p_atypical = float(config.prevalence.get("atypical_nevus", 0.0))
    p_melanoma = float(config.prevalence.get("melanoma", 0.0))
    diagnosis = str(truth_rng.choice(DIAGNOSES, p=[max(0.0, 1 - p_atypical - p_melanoma), p_atypical, p_melanoma]))
    lesion = draw_lesion(truth_rng, diagnosis, config)
    pixels, mask = render_lesion(image_rng, lesion, config)
    mm_per_px = config.field_of_view_mm / config.size_px
    acquired = (np.datetime64("2022-01-01") + np.timedelta64(int(misc_rng.integers(0, 730)), "D")).astype(str)
    image = SynthImage(role="current", pixels=pixels, kind="rgb", spacing_mm=(mm_per_px, mm_per_px),
                       masks={"lesion": mask}, acquired=acquired.replace("-", ""))
    n = len(lesion.colours)
    findings = [
        {"name": "lesion", "present": True, "mask": "lesion", "diameter_mm": lesion.diameter_mm,
         "diagnosis": lesion.diagnosis},
        {"name": "asymmetry", "present": lesion.asymmetry_axes > 0, "axes": lesion.asymmetry_axes},
        {"name": "irregular_border", "present": lesion.border_irregular},
        {"name": "colour_variegation", "present": n > 1, "colours": list(lesion.colours)},
        {"name": "large_diameter", "present": lesion.diameter_mm > LARGE_DIAMETER_MM,
         "diameter_mm": lesion.diameter_mm},
        {"name": "atypical_nevus", "present": lesion.diagnosis == "atypical nevus"},
        {"name": "melanoma", "present": lesion.diagnosis == "melanoma"},
    ]
    labels = {"kind": "derm", "present": {f["name"]: f["present"] for f in findings[1:]},
              "diagnosis": lesion.diagnosis, "abcd_points": lesion.points, "abcd_score": lesion.score,
              "asymmetry_axes": lesion.asymmetry_axes, "border_irregular": lesion.border_irregular,
              "colours": list(lesion.colours), "diameter_mm": lesion.diameter_mm,
              "lesion_area_mm2": round(float(mask.sum()) * mm_per_px**2, 2)}
    return SynthStudy(
        study_id=f"derm{index:06d}", patient_id=f"dermpat{index:06d}", images=[image], findings=findings,
        labels=labels, report=lesion_report(text_rng, lesion), questions=lesion_questions(text_rng, lesion),
        report_prompt=str(text_rng.choice(REPORT_PROMPTS)),
    )
