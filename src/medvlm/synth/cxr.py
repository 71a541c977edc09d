"""Synthetic frontal chest radiographs (PA view) with known findings, masks, priors, reports and questions.

One study = one synthetic patient. The patient's anatomy (thorax, lungs, heart, mediastinum, trachea and carina,
diaphragm, ribs, clavicles, spine, habitus, lung markings) is drawn once; each image (current, and with
`temporal` a prior) gets its own pose (tilt, shift, scale, obliquity, inspiration) and exposure (gamma, contrast,
brightness, noise). Findings are drawn independently with `CXRConfig.prevalence`; a `normal_fraction` of studies
has none. Each present finding has attributes and a pixel mask of the current image (and of the prior when
present there).

Geometry works in normalised image coordinates: u in [-1, 1] from image left to right, v in [-1, 1] from top to
bottom. The view is PA, so the patient's right is on the image left (u < 0). Every structure is a vectorised
function of (u, v) after the pose transform, so one image costs a few dozen numpy operations on (H, W) arrays.
Pixel values: higher = denser (MONOCHROME2: bone and fluid bright, air dark).

Findings (name: attributes):
  cardiomegaly: severity mild/moderate/severe, cardiothoracic_ratio
  pleural_effusion: side left/right/bilateral, size small/moderate/large
  pneumothorax: side left/right, size small/large
  consolidation: lobe, term "consolidation" | "opacity" (the report's word), extent patchy/moderate/extensive
  nodule: zone (e.g. "left upper zone"), size_mm, type nodule (< 30 mm) | mass (>= 30 mm)
  edema: severity mild/moderate/severe
  atelectasis: side left/right/bilateral, location "base", severity mild/moderate
  ett: tip_to_carina_cm, position "standard" | "low"
  enteric_tube: tip "stomach"
  central_line: side left/right, vein "internal jugular" | "subclavian", tip "SVC" | "cavoatrial junction" | "right atrium"
Attributes whose key starts with "_" are geometry shared between prior and current and never exported.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medvlm.synth.base import SynthImage, SynthStudy

GENERATOR_VERSION = "1"

FINDINGS = ("cardiomegaly", "pleural_effusion", "pneumothorax", "consolidation", "nodule", "edema", "atelectasis",
            "ett", "enteric_tube", "central_line")
DEVICES = ("ett", "enteric_tube", "central_line")
CHANGES = ("new", "resolved", "increased", "decreased", "unchanged")

# finding -> (attribute holding the ordinal level, levels from least to most). Nodules change by size_mm.
LEVELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cardiomegaly": ("severity", ("mild", "moderate", "severe")),
    "pleural_effusion": ("size", ("small", "moderate", "large")),
    "pneumothorax": ("size", ("small", "large")),
    "consolidation": ("extent", ("patchy", "moderate", "extensive")),
    "edema": ("severity", ("mild", "moderate", "severe")),
    "atelectasis": ("severity", ("mild", "moderate")),
}

DEFAULT_PREVALENCE = {
    "cardiomegaly": 0.2, "pleural_effusion": 0.2, "pneumothorax": 0.12, "consolidation": 0.18, "nodule": 0.12,
    "edema": 0.12, "atelectasis": 0.15, "ett": 0.1, "enteric_tube": 0.1, "central_line": 0.15,
}

# Cardiothoracic ratio ranges: normal hearts stay well below mild cardiomegaly so that "mild" is visible at 64 px.
CTR_RANGE = {"normal": (0.40, 0.47), "mild": (0.55, 0.58), "moderate": (0.61, 0.65), "severe": (0.68, 0.73)}
EFFUSION_HEIGHT = {"small": 0.10, "moderate": 0.32, "large": 0.6}  # fluid height above the costophrenic angle
PNEUMOTHORAX_FRACTION = {"small": (0.16, 0.22), "large": (0.35, 0.45)}  # lung retraction towards the hilum
# the report's word for a consolidation and its probability: wording only, the image is the same
CONSOLIDATION_TERMS = {"consolidation": 0.6, "opacity": 0.4}
CONSOLIDATION_RADIUS = {"patchy": 0.11, "moderate": 0.16, "extensive": 0.23}
EDEMA_STRENGTH = {"mild": 0.09, "moderate": 0.15, "severe": 0.22}
ATELECTASIS_HALF_THICKNESS = {"mild": 0.035, "moderate": 0.06}
LOBES = ("right upper lobe", "right middle lobe", "right lower lobe", "left upper lobe", "left lower lobe")
ZONES = ("upper", "middle", "lower")


@dataclass
class CXRConfig:
    """Options of the CXR generator.

    size_px: image side (64..1024). temporal: give studies a prior of the same patient, except
    `no_prior_fraction` of them. prevalence: finding -> probability present (independent), after the
    `normal_fraction` of studies that have no finding at all. report_style: "structured" (findings sentences in a
    radiologist's reading order) or "free" (shuffled). p_new: chance a present finding was absent on the
    prior; p_resolved: chance an absent finding was present on the prior (times half its prevalence).
    """

    size_px: int = 128
    temporal: bool = False
    no_prior_fraction: float = 0.15
    normal_fraction: float = 0.3
    prevalence: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PREVALENCE))
    p_new: float = 0.25
    p_resolved: float = 0.3
    field_of_view_mm: float = 400.0
    report_style: str = "structured"

    def __post_init__(self) -> None:
        from medvlm.synth.cxr_text import REPORT_STYLES

        if self.report_style not in REPORT_STYLES:
            raise ValueError(f"CXRConfig.report_style must be one of {REPORT_STYLES}, got {self.report_style!r}")
        if not 32 <= int(self.size_px) <= 2048:
            raise ValueError(f"CXRConfig.size_px must be within 32..2048 (64..1024 supported), got {self.size_px}")
        unknown = set(self.prevalence) - set(FINDINGS)
        if unknown:
            raise ValueError(f"CXRConfig.prevalence has unknown findings {sorted(unknown)}; known: {FINDINGS}")
        self.prevalence = {name: float(self.prevalence.get(name, 0.0)) for name in FINDINGS}


# ----------------------------------------------------------------------------------------------- drawing


@dataclass
class Anatomy:
    """Per-patient anatomy in normalised coordinates (see module docstring)."""

    habitus: str
    thorax_half_width: float
    soft_tissue: float
    apex_v: float
    dome_v: tuple[float, float]  # (right, left) hemidiaphragm dome height; the right is usually higher
    ctr: float
    heart_center: tuple[float, float]
    heart_half_height: float
    mediastinum_half_width: float
    carina_v: float
    trachea_u: float
    rib_spacing: float
    rib_phase: float
    rib_curve: float
    clavicle_rise: float
    gastric_bubble: float
    markings: np.ndarray  # (40, 40) over [-1, 1]^2: vessel-like markings, strongest near the hila


@dataclass
class Pose:
    tilt_deg: float
    shift: tuple[float, float]
    scale: float
    obliquity: float  # spine and trachea offset relative to the thorax (patient rotation)
    inspiration: float  # diaphragm shift (positive: deeper inspiration, lower domes)


@dataclass
class Exposure:
    gamma: float
    contrast: float
    brightness: float
    noise_sigma: float


def _choose(rng: np.random.Generator, options, p=None) -> str:
    """One of `options` (with probabilities p); cheaper than rng.choice for the few draws per study."""
    u = rng.random()
    if p is None:
        return options[min(int(u * len(options)), len(options) - 1)]
    for option, cumulative in zip(options, np.cumsum(p), strict=True):
        if u < cumulative:
            return option
    return options[-1]


def draw_anatomy(rng: np.random.Generator) -> Anatomy:
    habitus = _choose(rng, ["slender", "average", "broad"], [0.3, 0.45, 0.25])
    tw = {"slender": (0.66, 0.72), "average": (0.72, 0.78), "broad": (0.78, 0.84)}[habitus]
    soft = {"slender": (0.04, 0.07), "average": (0.07, 0.1), "broad": (0.1, 0.14)}[habitus]
    dome_r = rng.uniform(0.36, 0.46)
    carina_v = rng.uniform(-0.33, -0.27)
    return Anatomy(
        habitus=habitus,
        thorax_half_width=rng.uniform(*tw),
        soft_tissue=rng.uniform(*soft),
        apex_v=rng.uniform(-0.76, -0.68),
        dome_v=(dome_r, dome_r + rng.uniform(0.02, 0.06)),
        ctr=rng.uniform(*CTR_RANGE["normal"]),
        heart_center=(rng.uniform(0.11, 0.14), rng.uniform(-0.04, 0.0)),  # v relative to the left dome
        heart_half_height=rng.uniform(0.27, 0.31),
        mediastinum_half_width=rng.uniform(0.11, 0.13),
        carina_v=carina_v,
        trachea_u=rng.uniform(-0.01, 0.01),
        rib_spacing=rng.uniform(0.16, 0.18),
        rib_phase=rng.uniform(0, 1),
        rib_curve=rng.uniform(0.3, 0.45),
        clavicle_rise=rng.uniform(0.06, 0.14),
        gastric_bubble=rng.uniform(0.0, 0.09) if rng.random() < 0.7 else 0.0,
        markings=_draw_markings(rng, carina_v),
    )


def _draw_markings(rng: np.random.Generator, carina_v: float) -> np.ndarray:
    """(40, 40) lung markings on [-1, 1]^2: fine noise fading away from the hila plus slow density variation."""
    fine = rng.standard_normal((40, 40)).astype(np.float32)
    coarse = rng.standard_normal((12, 12)).astype(np.float32)
    axis = np.linspace(-1, 1, 40, dtype=np.float32)
    hv, hu = axis[:, None] - carina_v - 0.2, np.abs(axis[None, :]) - 0.2
    d_hilum = np.sqrt(hu * hu + hv * hv)
    return (0.06 * fine * np.exp(-1.5 * d_hilum) + 0.025 * _upsample(coarse, axis, axis)).astype(np.float32)


def draw_pose(rng: np.random.Generator) -> Pose:
    return Pose(
        tilt_deg=float(np.clip(rng.normal(0, 1.8), -5, 5)),
        shift=(rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03)),
        scale=rng.uniform(0.95, 1.04),
        obliquity=rng.uniform(-0.025, 0.025),
        inspiration=rng.uniform(-0.03, 0.03),
    )


def draw_exposure(rng: np.random.Generator) -> Exposure:
    return Exposure(gamma=rng.uniform(0.85, 1.2), contrast=rng.uniform(0.9, 1.1),
                    brightness=rng.uniform(-0.04, 0.04), noise_sigma=rng.uniform(0.012, 0.03))


def draw_finding(name: str, rng: np.random.Generator, anatomy: Anatomy) -> dict[str, Any]:
    """Attributes of one present finding (public ones plus "_" geometry shared by prior and current)."""
    if name in LEVELS:
        key, levels = LEVELS[name]
        attrs: dict[str, Any] = {key: _choose(rng, levels), "_jitter": rng.uniform()}
    else:
        attrs = {}
    if name == "pleural_effusion":
        attrs["side"] = _choose(rng, ["left", "right", "bilateral"], [0.4, 0.35, 0.25])
    elif name == "pneumothorax":
        attrs["side"] = _choose(rng, ["left", "right"])
    elif name == "consolidation":
        attrs["lobe"] = _choose(rng, LOBES)
        attrs["term"] = _choose(rng, list(CONSOLIDATION_TERMS), list(CONSOLIDATION_TERMS.values()))
        attrs["_offset"] = (rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05))
        attrs["_shape"] = rng.standard_normal((6, 6)).astype(np.float32)
    elif name == "nodule":
        side = _choose(rng, ["right", "left"])
        zone = _choose(rng, ZONES)
        size_mm = float(rng.uniform(20, 29) if rng.random() < 0.6 else rng.uniform(30, 55))
        attrs.update(zone=f"{side} {zone} zone", size_mm=round(size_mm), type="nodule" if size_mm < 30 else "mass",
                     _where=(rng.uniform(0.4, 0.7), rng.uniform(0.15, 0.85)))
    elif name == "atelectasis":
        attrs["side"] = _choose(rng, ["left", "right", "bilateral"], [0.4, 0.35, 0.25])
        attrs["location"] = "base"
        attrs["_tilt"] = rng.uniform(-0.12, 0.12)
    elif name == "ett":
        cm = float(rng.uniform(2.5, 6.5) if rng.random() < 0.8 else rng.uniform(0.5, 1.8))
        attrs.update(tip_to_carina_cm=round(cm, 1), position="standard" if cm >= 2.0 else "low")
    elif name == "enteric_tube":
        attrs.update(tip="stomach", _curl=rng.uniform(0.2, 0.35))
    elif name == "central_line":
        side = _choose(rng, ["right", "left"], [0.7, 0.3])
        tip = _choose(rng, ["SVC", "cavoatrial junction", "right atrium"], [0.5, 0.35, 0.15])
        attrs.update(side=side, vein=_choose(rng, ["internal jugular", "subclavian"]), tip=tip)
    return attrs


def draw_findings(rng: np.random.Generator, config: CXRConfig, anatomy: Anatomy) -> dict[str, dict[str, Any]]:
    """name -> attributes of the present findings of one image."""
    normal = rng.random() < config.normal_fraction
    draws = rng.random(len(FINDINGS))
    present = {}
    for name, u in zip(FINDINGS, draws, strict=True):
        # Draw attributes for every finding so the random stream does not depend on which are present.
        attrs = draw_finding(name, rng, anatomy)
        if not normal and u < config.prevalence[name]:
            present[name] = attrs
    return present


def draw_prior_findings(rng: np.random.Generator, config: CXRConfig, anatomy: Anatomy,
                        current: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The prior image's findings and the change label of each finding present on either image."""
    prior: dict[str, dict[str, Any]] = {}
    change: dict[str, str] = {}
    for name in FINDINGS:
        u_new, u_resolved, u_dir = rng.random(3)
        fresh = draw_finding(name, rng, anatomy)
        if name in current:
            if u_new < config.p_new:
                change[name] = "new"
                continue
            attrs = dict(current[name])
            direction = ("unchanged", "increased", "decreased")[int(u_dir * 3)]
            if name in DEVICES:
                direction = "unchanged"
            elif name == "nodule":
                if direction != "unchanged":
                    ratio = 1.35 if direction == "increased" else 1 / 1.35
                    attrs["size_mm"] = round(current[name]["size_mm"] / ratio)
                    attrs["type"] = "nodule" if attrs["size_mm"] < 30 else "mass"
            else:
                key, levels = LEVELS[name]
                i = levels.index(current[name][key])
                if direction == "increased" and i == 0 or direction == "decreased" and i == len(levels) - 1:
                    direction = "unchanged"
                step = {"unchanged": 0, "increased": -1, "decreased": 1}[direction]
                attrs[key] = levels[i + step]
            prior[name] = attrs
            change[name] = direction
        elif u_resolved < config.p_resolved * config.prevalence[name] * 0.5:
            prior[name] = fresh
            change[name] = "resolved"
    return prior, change


# ---------------------------------------------------------------------------------------------- render


@functools.lru_cache(maxsize=8)
def _grid(size_px: int) -> tuple[np.ndarray, np.ndarray]:
    axis = ((np.arange(size_px, dtype=np.float32) + 0.5) / size_px) * 2 - 1
    v, u = np.meshgrid(axis, axis, indexing="ij")
    return u, v


def _ramp(signed: np.ndarray, edge: float) -> np.ndarray:
    """Soft inside-indicator of a signed distance (positive inside): 0..1 across `edge`."""
    return np.clip(0.5 + signed / edge, 0.0, 1.0)


def _upsample(texture: np.ndarray, rows_v: np.ndarray, cols_u: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a small (n, n) texture laid over [-1, 1]^2 on the separable grid rows_v x cols_u.

    Interpolates along columns on the small texture, then gathers whole rows: (H, W) float32, no per-pixel gather.
    """
    x0, fx = _interp_index(cols_u, texture.shape[1])
    columns = texture[:, x0] * (1 - fx) + texture[:, x0 + 1] * fx  # (n, W)
    y0, fy = _interp_index(rows_v, texture.shape[0])
    return columns[y0] * (1 - fy)[:, None] + columns[y0 + 1] * fy[:, None]


def _interp_index(coords: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Left sample index and fraction of positions in [-1, 1] on n samples spanning [-1, 1]."""
    x = np.clip((coords + 1) * (0.5 * (n - 1)), 0, n - 1.001)
    x0 = x.astype(np.int64)
    return x0, (x - x0).astype(np.float32)


def _dist(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sqrt(x * x + y * y)


def _segment_distance(u: np.ndarray, v: np.ndarray, points: list[tuple[float, float]]) -> np.ndarray:
    """Distance from every pixel to a polyline through `points`."""
    best = None
    for (u0, v0), (u1, v1) in zip(points[:-1], points[1:], strict=False):
        du, dv = u1 - u0, v1 - v0
        t = np.clip(((u - u0) * du + (v - v0) * dv) / (du * du + dv * dv + 1e-12), 0, 1)
        d = _dist(u - (u0 + t * du), v - (v0 + t * dv))
        best = d if best is None else np.minimum(best, d)
    return best


class _Frame:
    """Anatomical coordinates of one image and the structures every finding needs."""

    def __init__(self, anatomy: Anatomy, pose: Pose, size_px: int) -> None:
        u0, v0 = _grid(size_px)
        angle = float(np.radians(pose.tilt_deg))
        c, s = float(np.cos(angle)), float(np.sin(angle))
        uu, vv = u0 - pose.shift[0], v0 - pose.shift[1]
        self.u = (c * uu + s * vv) / pose.scale
        self.v = (-s * uu + c * vv) / pose.scale
        # Separable approximations (tilt ignored) for textures: anatomical u of each column, v of each row.
        self.u_axis = (u0[0] - pose.shift[0]) / pose.scale
        self.v_axis = (v0[:, 0] - pose.shift[1]) / pose.scale
        self.px = 2.0 / size_px / pose.scale  # one pixel in normalised units
        self.tilt_margin = 1.5 * abs(s) / pose.scale + 0.02  # how far v strays from the row's v under tilt
        self.edge = 1.5 * self.px
        self.a = anatomy
        self.pose = pose
        self.dome = (anatomy.dome_v[0] + pose.inspiration, anatomy.dome_v[1] + pose.inspiration)

    def rows(self, v_low: float, v_high: float) -> slice:
        """Image rows that hold every pixel whose anatomical v lies in [v_low, v_high] (tilt included)."""
        margin = self.tilt_margin + 2 * self.edge
        size = self.u.shape[0]
        to_row = lambda v: (v * self.pose.scale + self.pose.shift[1] + 1) * 0.5 * size  # noqa: E731
        first = int(np.floor(to_row(v_low - margin)))
        last = int(np.ceil(to_row(v_high + margin)))
        return slice(min(max(first, 0), size), min(max(last + 1, 0), size))

    def side_x(self, side: str) -> np.ndarray:
        """Lateral coordinate of a patient side: grows from the midline towards that side's chest wall."""
        return -self.u if side == "right" else self.u

    def diaphragm(self, side: str, x: np.ndarray, elevate: float = 0.0) -> np.ndarray:
        """Dome of one hemidiaphragm: highest at mid-lung, falling to the costophrenic angle laterally."""
        tw = self.a.thorax_half_width
        dome = self.dome[0 if side == "right" else 1] - elevate
        t = (x - 0.45 * tw) / tw
        return dome + 0.55 * t * t

    def lung(self, side: str, elevate: float = 0.0, shrink: float = 0.0, hilum: tuple[float, float] = (0.2, -0.1)):
        """Soft lung field of one side (0..1), optionally retracted towards the hilum by `shrink` (pneumothorax)."""
        a = self.a
        x, v = self.side_x(side), self.v
        if shrink:
            hx, hv = hilum
            x = hx + (x - hx) / (1 - shrink)
            v = hv + (v - hv) / (1 - shrink)
        tw = a.thorax_half_width
        widest = 0.3
        t = np.clip((widest - v) * (1 / (widest - a.apex_v)), 0, 1.2)
        lateral = tw * np.sqrt(np.clip(1 - t * t, 0, 1))
        medial = a.mediastinum_half_width * 0.7 + 0.05 * np.clip((v - a.carina_v) * 2, 0, 1)
        signed = np.minimum(np.minimum(lateral - x, x - medial), self.diaphragm(side, x, elevate) - v)
        return _ramp(signed, self.edge)

    def heart_geometry(self, ctr: float) -> tuple[float, float, float, float]:
        """(center u, center v, half width, half height) of the cardiac silhouette for a cardiothoracic ratio."""
        a = self.a
        half_w = ctr * a.thorax_half_width
        cu = a.heart_center[0] + (ctr - 0.44) * a.thorax_half_width * 0.5
        cv = self.dome[1] + a.heart_center[1]
        hh = a.heart_half_height * (1 + (ctr - 0.44) * 0.8)
        return cu, cv, half_w, hh

    def heart(self, ctr: float) -> np.ndarray:
        cu, cv, half_w, hh = self.heart_geometry(ctr)
        du, dv = (self.u - cu) * (1 / half_w), (self.v - cv) * (1 / hh)
        r = np.sqrt(du * du + dv * dv)
        return _ramp((1 - r) * min(half_w, hh), self.edge)

    def hilum(self, side: str) -> tuple[float, float]:
        return (0.2, self.a.carina_v + 0.2)


def render(anatomy: Anatomy, pose: Pose, exposure: Exposure, findings: dict[str, dict[str, Any]], size_px: int,
           noise_rng: np.random.Generator, field_of_view_mm: float = 400.0,
           ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draw one radiograph: (H, W) uint8 pixels and name -> (H, W) bool mask for each present finding."""
    f = _Frame(anatomy, pose, size_px)
    a, u, v = anatomy, f.u, f.v
    tw = a.thorax_half_width
    masks: dict[str, np.ndarray] = {}
    abs_u = np.abs(u)

    # Body outline with neck and shoulders; outside is air.
    width = a.thorax_half_width + a.soft_tissue
    shoulder = (v + 0.72) * (1 / 0.16)
    body_w = width + 0.03 + 0.2 * np.exp(-shoulder * shoulder) + 0.02 * np.clip(v, 0, 1)
    shoulder_top = v + 0.95 - 0.35 * np.clip(abs_u - 0.2, 0, None)  # shoulders slope down from the neck
    torso = _ramp(np.minimum(body_w - abs_u, shoulder_top), 3 * f.edge)
    body = np.maximum(torso, _ramp(0.24 - abs_u, 3 * f.edge))
    density = 0.03 + (0.45 + 0.06 * a.soft_tissue) * body

    elevate = {"right": 0.0, "left": 0.0}
    atel = findings.get("atelectasis")
    if atel:
        for side in ("right", "left"):
            if atel["side"] in (side, "bilateral"):
                elevate[side] = 0.04
    ptx = findings.get("pneumothorax")
    ctr = _ctr(anatomy, findings)
    heart = f.heart(ctr)
    # Mediastinum (with the aortic knob on the patient's left) and spine, offset by patient rotation.
    knob_u, knob_v = (u - 0.13) * (1 / 0.05), (v - a.carina_v + 0.06) * (1 / 0.07)
    medi_w = a.mediastinum_half_width + 0.045 * np.exp(-(knob_u * knob_u + knob_v * knob_v))
    mediastinum = _ramp(medi_w - np.abs(u - 0.01), f.edge) * _ramp(v + 0.8, 4 * f.edge)
    central = np.maximum(heart, mediastinum)
    # Abdomen below each hemidiaphragm.
    below = np.where(u < 0, _ramp(v - f.diaphragm("right", -u, elevate["right"]), f.edge),
                     _ramp(v - f.diaphragm("left", u, elevate["left"]), f.edge))
    central = central * (1 - below)

    lungs = {}
    full_lungs = {}
    for side in ("right", "left"):
        full = f.lung(side, elevate[side]) * (1 - central)
        full_lungs[side] = full
        if ptx and ptx["side"] == side:
            lo, hi = PNEUMOTHORAX_FRACTION[ptx["size"]]
            shrink = lo + ptx["_jitter"] * (hi - lo)
            inner = f.lung(side, elevate[side], shrink=shrink, hilum=f.hilum(side)) * (1 - central)
            lungs[side] = inner
            air = np.clip(full - inner, 0, 1)
            density -= 0.36 * air  # air without lung markings
            rim = np.clip(inner * (1 - inner) * 4, 0, 1)  # the visceral pleural line
            density += 0.14 * rim
            masks["pneumothorax"] = air > 0.5
        else:
            lungs[side] = full
    lung = lungs["right"] + lungs["left"]
    density -= 0.33 * lung

    # Lung markings: vessels fan out from the hila, plus slow density variation.
    hv = v - a.carina_v - 0.2
    hu = abs_u - 0.2
    d_hilum = np.sqrt(hu * hu + hv * hv)
    texture = _upsample(a.markings, f.v_axis, f.u_axis)
    hilar = d_hilum * (1 / 0.17)
    density += lung * (texture + 0.12 * np.exp(-hilar * hilar) + 0.05 * np.clip(1 - d_hilum, 0, 1))

    density += 0.22 * central
    density += 0.1 * below * body
    if a.gastric_bubble:
        rows = f.rows(f.dome[1] + 0.07 - a.gastric_bubble, f.dome[1] + 0.07 + a.gastric_bubble)
        bu, bv = (u[rows] - 0.3) * (1 / 1.5), v[rows] - f.dome[1] - 0.07
        density[rows] -= 0.2 * _ramp(a.gastric_bubble - np.sqrt(bu * bu + bv * bv), f.edge) * below[rows]

    # Spine (mostly hidden behind the mediastinum), posterior ribs and clavicles.
    spine_u = u - a.trachea_u - pose.obliquity
    spine = _ramp(0.06 - np.abs(spine_u), f.edge) * body
    vertebra = (v + 2) * (1 / 0.09)
    vertebra = np.abs(vertebra - np.floor(vertebra) - 0.5)
    density += spine * (0.03 + 0.05 * vertebra)
    x = np.abs(spine_u)
    rib_v = v + 0.12 * x - a.rib_curve * 1.6 * x * x
    # Rib spacing widens towards the bases.
    phase = (rib_v + 0.08 * rib_v * rib_v) * (1 / a.rib_spacing) + a.rib_phase
    phase = phase - np.floor(phase)
    rib = np.clip(1 - np.abs(phase - 0.2) * (1 / 0.15), 0, 1)
    in_thorax = _ramp(tw + 0.03 - x, 2 * f.edge) * _ramp(v - a.apex_v + 0.12, 3 * f.edge) * (x > 0.05)
    in_thorax = in_thorax * _ramp(f.dome[0] + 0.15 - v, 0.1)
    density += 0.1 * rib * in_thorax * (1 - 0.6 * central)
    # Clavicles: bands that rise from the sternal ends towards the shoulders.
    cx = abs_u * (1 / tw)
    rows = f.rows(-0.9 - a.clavicle_rise, -0.6)  # only the rows the clavicles can reach
    cx, cv, cu = cx[rows], v[rows], abs_u[rows]
    clavicle_v = -0.66 - (0.08 + a.clavicle_rise) * cx + 0.06 * cx * cx
    clav = _ramp(0.03 - np.abs(cv - clavicle_v), f.edge) * _ramp(cu - 0.07, f.edge) * _ramp(tw + 0.06 - cu, f.edge)
    density[rows] += 0.15 * clav
    rows = f.rows(-1.5, a.carina_v)
    trachea_u = u[rows] - (a.trachea_u + 0.5 * pose.obliquity)
    trachea = _ramp(0.035 - np.abs(trachea_u), f.edge) * _ramp(a.carina_v - v[rows], f.edge)
    density[rows] -= 0.17 * trachea

    # ---- findings: each adds density in its region and records a mask
    if "cardiomegaly" in findings:
        masks["cardiomegaly"] = heart * (1 - below) > 0.5
    eff = findings.get("pleural_effusion")
    if eff:
        total = np.zeros_like(u)
        for side in ("right", "left"):
            if eff["side"] not in (side, "bilateral"):
                continue
            xs = f.side_x(side)
            costophrenic = float(f.diaphragm(side, np.float32(tw), elevate[side]))
            height = EFFUSION_HEIGHT[eff["size"]] * (0.9 + 0.2 * eff["_jitter"])
            lateral = np.clip(xs * (1 / tw), 0, 1)
            level = costophrenic - height - 0.14 * lateral * lateral * lateral  # meniscus along the chest wall
            total = np.maximum(total, _ramp(v - level, 2 * f.edge) * full_lungs[side])
        density += 0.3 * total
        masks["pleural_effusion"] = total > 0.5
    cons = findings.get("consolidation")
    if cons:
        side = "right" if cons["lobe"].startswith("right") else "left"
        xs = f.side_x(side)
        center = {"right upper lobe": (0.45, -0.42), "right middle lobe": (0.32, 0.05), "right lower lobe": (0.5, 0.25),
                  "left upper lobe": (0.45, -0.38), "left lower lobe": (0.6, 0.27)}[cons["lobe"]]
        cx = center[0] * tw + cons["_offset"][0]
        cv = center[1] + cons["_offset"][1]
        radius = CONSOLIDATION_RADIUS[cons["extent"]]
        dx, dv = (xs - cx) * (1 / radius), (v - cv) * (1 / (1.2 * radius))
        sign = -1.0 if side == "right" else 1.0
        shape = _upsample(cons["_shape"], (f.v_axis - cv) / (2.4 * radius), (sign * f.u_axis - cx) / (2 * radius))
        blob = _ramp(1 - np.sqrt(dx * dx + dv * dv) + 0.3 * shape, 0.25)
        if cons["lobe"] == "right upper lobe":  # the minor fissure gives a sharp inferior margin
            blob = blob * _ramp(-0.12 - v, f.edge)
        blob = blob * lungs[side]
        density += 0.27 * blob
        masks["consolidation"] = blob > 0.5
    nod = findings.get("nodule")
    if nod:
        side, zone = nod["zone"].split()[:2]
        top, bottom = a.apex_v + 0.15, f.dome[0 if side == "right" else 1] - 0.12
        third = (bottom - top) / 3
        zone_top = top + ZONES.index(zone) * third
        cx = nod["_where"][0] * tw
        cv = zone_top + nod["_where"][1] * third
        radius = nod["size_mm"] / field_of_view_mm  # diameter in mm over a field of view of 2 units
        dx, dv = f.side_x(side) - cx, v - cv
        lesion = _ramp(radius - np.sqrt(dx * dx + dv * dv), f.edge)
        density += 0.4 * lesion  # dense enough to stand out from ribs and markings at 64 px
        masks["nodule"] = lesion > 0.5
    ed = findings.get("edema")
    if ed:
        strength = EDEMA_STRENGTH[ed["severity"]]
        spread = d_hilum * (1 / (0.3 + strength))
        haze = np.exp(-spread * spread) * lung
        density += strength * (1 + 0.2 * ed["_jitter"]) * haze
        masks["edema"] = haze > 0.35
    if atel:
        total = np.zeros_like(u)
        half = ATELECTASIS_HALF_THICKNESS[atel["severity"]]
        for side in ("right", "left"):
            if atel["side"] not in (side, "bilateral"):
                continue
            xs = f.side_x(side)
            band_v = f.diaphragm(side, xs, elevate[side]) - 0.08 - half + atel["_tilt"] * (xs * (1 / tw) - 0.55)
            band = _ramp(half - np.abs(v - band_v), f.edge) * _ramp(0.3 * tw - np.abs(xs - 0.55 * tw), 3 * f.edge)
            total = np.maximum(total, band * lungs[side])
        density += 0.25 * total
        masks["atelectasis"] = total > 0.5

    # Devices: radiopaque lines at least about a pixel wide.
    line_half = max(0.014, 0.6 * f.px)
    mm = 2.0 / field_of_view_mm  # normalised units per mm
    lines = []
    ett = findings.get("ett")
    if ett:
        tip_v = a.carina_v - ett["tip_to_carina_cm"] * 10 * mm
        tu = a.trachea_u + 0.5 * pose.obliquity
        lines.append(("ett", [(tu + 0.02, -1.3), (tu, tip_v)], 0.45))
    ent = findings.get("enteric_tube")
    if ent:
        stomach_v = f.dome[1] + 0.13
        lines.append(("enteric_tube", [(a.trachea_u - 0.03, -1.3), (0.0, a.carina_v), (0.04, 0.2),
                                       (0.14, stomach_v - 0.03), (0.14 + ent["_curl"], stomach_v)], 0.4))
    cvc = findings.get("central_line")
    if cvc:
        tip_v = a.carina_v + {"SVC": 0.12, "cavoatrial junction": 0.24, "right atrium": 0.34}[cvc["tip"]]
        s = -1.0 if cvc["side"] == "right" else 1.0
        if cvc["vein"] == "internal jugular":
            points = [(s * 0.2, -1.3), (s * 0.14, -0.75), (-0.06, -0.5), (-0.07, tip_v)]
        else:
            points = [(s * (tw + 0.1), -0.72), (s * 0.2, -0.66), (-0.06, -0.5), (-0.07, tip_v)]
        lines.append(("central_line", points, 0.4))
    for name, points, strength in lines:
        d = _segment_distance(u, v, points)
        density += strength * _ramp(line_half - d, f.edge)
        masks[name] = d < line_half + f.px

    # Exposure: film response, contrast, brightness, quantum noise.
    image = np.clip(density, 0, 1) ** exposure.gamma * exposure.contrast + exposure.brightness
    # Uniform noise with the standard deviation noise_sigma (cheaper to draw than Gaussian, looks the same).
    image += (noise_rng.random(image.shape, dtype=np.float32) - 0.5) * (exposure.noise_sigma * 12**0.5)
    pixels = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    return pixels, {name: masks[name] for name in findings}


# --------------------------------------------------------------------------------------------- studies


def public(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if not k.startswith("_")}


def generate_study(rng: np.random.Generator, index: int, config: CXRConfig) -> SynthStudy:
    """Draw study `index` (patient, images, findings, report, questions) from `rng`."""
    from medvlm.synth import cxr_text

    # Independent streams: changing how text is drawn never changes the pixels, and vice versa.
    anatomy_rng, finding_rng, image_rng, text_rng, prior_rng, misc_rng = rng.spawn(6)
    anatomy = draw_anatomy(anatomy_rng)
    current = draw_findings(finding_rng, config, anatomy)
    has_prior = config.temporal and misc_rng.random() >= config.no_prior_fraction
    prior, change = draw_prior_findings(prior_rng, config, anatomy, current) if has_prior else ({}, {})

    acquired = datetime.date(2022, 1, 1) + datetime.timedelta(days=int(misc_rng.integers(0, 730)))
    prior_acquired = acquired - datetime.timedelta(days=int(misc_rng.integers(1, 365)))
    study_id = f"cxr{index:06d}"
    spacing = config.field_of_view_mm / config.size_px
    images, acquisition = [], []
    for role, findings, date in (("current", current, acquired), ("prior", prior, prior_acquired)):
        if role == "prior" and not has_prior:
            continue
        pose, exposure = draw_pose(image_rng), draw_exposure(image_rng)
        acquisition.append({"role": role, **_rounded(dataclasses.asdict(pose)), **_rounded(dataclasses.asdict(exposure))})
        pixels, masks = render(anatomy, pose, exposure, findings, config.size_px, image_rng, config.field_of_view_mm)
        images.append(SynthImage(role=role, pixels=pixels, kind="gray", spacing_mm=(spacing / pose.scale,) * 2,
                                 masks=masks, acquired=date.strftime("%Y%m%d"), view="PA"))

    text = cxr_text.write_text(text_rng, current, prior if has_prior else None, change, temporal=config.temporal,
                                 style=config.report_style)
    finding_rows = []
    for name in FINDINGS:
        row: dict[str, Any] = {"name": name, "present": name in current, **public(current.get(name, {}))}
        if has_prior:
            row["prior_present"] = name in prior
            if name in prior:
                row["prior"] = public(prior[name])
                row["prior_mask"] = name
            if name in change:
                row["change"] = change[name]
        if name in current:
            row["mask"] = name
        finding_rows.append(row)
    labels = {
        "kind": "cxr",
        "has_prior": has_prior,
        "acquired": [im.acquired for im in images],
        "anatomy": {"habitus": anatomy.habitus, "cardiothoracic_ratio": round(_ctr(anatomy, current), 3)},
        "acquisition": acquisition,  # per image: pose (tilt, shift, scale, obliquity, inspiration) and exposure
        "chexpert": text.chexpert,
        "present": cxr_text.observations_present(current),
        "change": change if has_prior else {},
    }
    return SynthStudy(study_id=study_id, patient_id=f"cxrpat{index:06d}", images=images, findings=finding_rows,
                      labels=labels, report=text.report, questions=text.questions, report_prompt=text.prompt)


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 4) if isinstance(v, float) else [round(x, 4) for x in v]) for k, v in values.items()}


def _ctr(anatomy: Anatomy, findings: dict[str, dict[str, Any]]) -> float:
    if "cardiomegaly" not in findings:
        return anatomy.ctr
    lo, hi = CTR_RANGE[findings["cardiomegaly"]["severity"]]
    return lo + findings["cardiomegaly"]["_jitter"] * (hi - lo)


def without_finding(findings: dict[str, dict[str, Any]], name: str) -> dict[str, dict[str, Any]]:
    """A copy of `findings` without `name` (to render the same image with and without one finding)."""
    return {k: v for k, v in findings.items() if k != name}

