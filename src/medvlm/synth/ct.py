"""Synthetic CT of the chest and upper abdomen: a 3D volume in Hounsfield units with organ and lesion masks.

Volume convention (as `medvlm.imaging`): pixels (D, H, W) int16 HU, d runs inferior -> superior, h posterior ->
anterior, w patient left -> right; spacing_mm = (slice, row, col). The scan covers 330-400 mm from above the lung
apices to the lower kidneys; the in-plane field of view is 360-500 mm (0.7-1.0 mm pixels at 512 px), so the
spacing is coverage / depth and field / size_px (about 11 mm x 6.5 mm at the default 32 x 64 x 64).

Anatomy, painted back to front with partial-volume edges: air and table, body outline with subcutaneous fat,
muscle wall, abdominal contents (fat, bowel, gas), ribs, spine (vertebral body, canal, posterior elements), aorta,
heart, lungs (-860 HU, vessels, domes over the diaphragm), liver (~60 HU), spleen, kidneys (~35 HU). Lesions,
each drawn with `CTConfig.prevalence`: lung nodule (side, lobe, size), hypodense liver lesion (Couinaud segment,
size), simple kidney cyst (side, size, -5 to 10 HU). Image noise is Gaussian with a per-study sd of 4-8 HU.
Masks: "body", "lung_right", "lung_left", "heart", "liver", "spleen", "kidney_right", "kidney_left", "spine"
(organs, lesions included) and "lung_nodule", "liver_lesion", "kidney_cyst" when present.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medvlm.synth.base import SynthImage, SynthQuestion, SynthStudy
from medvlm.synth.texture import ridges, smooth_noise

GENERATOR_VERSION = "1"

LESIONS = ("lung_nodule", "liver_lesion", "kidney_cyst")
LOBES = {"right": ("upper", "middle", "lower"), "left": ("upper", "lower")}
LOBE_WEIGHTS = {"right": (0.4, 0.2, 0.4), "left": (0.55, 0.45)}
SEGMENTS = ("II", "III", "IVa", "IVb", "V", "VI", "VII", "VIII")  # Couinaud; caudate (I) not modelled
RIGHT_SEGMENTS = ("V", "VI", "VII", "VIII")
ORGANS = ("body", "lung_right", "lung_left", "heart", "liver", "spleen", "kidney_right", "kidney_left", "spine")
_ID = {name: i + 1 for i, name in enumerate(ORGANS + ("aorta",))}


@dataclass
class CTConfig:
    """Options of the CT generator.

    size_px: rows = columns of each slice; depth: slices (None: size_px // 2).
    prevalence: probability of each lesion ("lung_nodule", "liver_lesion", "kidney_cyst"), drawn independently;
    a lesion left out has probability 0.
    *_size_mm: (min, max) lesion diameter; liver lesions and cysts are at least 3 in-plane voxels across (coarse
    grids raise the minimum), and a lesion that does not fit its organ is shrunk; the truth has the drawn size.
    """

    size_px: int = 64
    depth: int | None = None
    prevalence: dict[str, float] = field(
        default_factory=lambda: {"lung_nodule": 0.4, "liver_lesion": 0.3, "kidney_cyst": 0.3})
    nodule_size_mm: tuple[float, float] = (5.0, 30.0)
    liver_lesion_size_mm: tuple[float, float] = (10.0, 45.0)
    kidney_cyst_size_mm: tuple[float, float] = (8.0, 30.0)

    def __post_init__(self) -> None:
        unknown = set(self.prevalence) - set(LESIONS)
        if unknown:
            raise ValueError(f"CTConfig.prevalence has unknown lesions {sorted(unknown)}; known: {list(LESIONS)}")
        self.prevalence = {name: float(self.prevalence.get(name, 0.0)) for name in LESIONS}
        for name, p in self.prevalence.items():
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"CTConfig.prevalence[{name!r}] must be within [0, 1], got {p}")
        if self.size_px < 32 or self.slices < 16:
            raise ValueError(f"CTConfig needs size_px >= 32 and depth >= 16, got {self.size_px} and {self.slices}")
        for name in ("nodule_size_mm", "liver_lesion_size_mm", "kidney_cyst_size_mm"):
            low, high = getattr(self, name)
            if not 2.0 <= low <= high <= 80.0:
                raise ValueError(f"CTConfig.{name} must satisfy 2 <= min <= max <= 80 mm, got {(low, high)}")

    @property
    def slices(self) -> int:
        return int(self.depth) if self.depth is not None else int(self.size_px) // 2


# ------------------------------------------------------------------------------------------------ anatomy


@dataclass
class _Grid:
    """Voxel-centre coordinates in mm, broadcastable: x (1,1,W) towards patient right, y (1,H,1) towards
    anterior, t (D,1,1) depth below the top of the scan; spacing (slice, row, col)."""

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    spacing: tuple[float, float, float]

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.t.shape[0], self.y.shape[1], self.x.shape[2]


def _make_grid(depth: int, size: int, coverage_mm: float, field_mm: float) -> _Grid:
    sz, sxy = coverage_mm / depth, field_mm / size
    # d runs inferior -> superior, so depth below the top decreases with d; w runs left -> right (x up).
    t = (coverage_mm - (np.arange(depth, dtype=np.float32) + 0.5) * sz).reshape(-1, 1, 1)
    y = ((np.arange(size, dtype=np.float32) + 0.5 - size / 2) * sxy).reshape(1, -1, 1)
    x = ((np.arange(size, dtype=np.float32) + 0.5 - size / 2) * sxy).reshape(1, 1, -1)
    return _Grid(x=x.astype(np.float32), y=y.astype(np.float32), t=t.astype(np.float32), spacing=(sz, sxy, sxy))


def _soft(distance_mm: np.ndarray, voxel_mm: float) -> np.ndarray:
    """Partial-volume weight of a shape from a signed distance (negative inside): 1 inside, 0 outside."""
    return np.clip(np.float32(0.5) - distance_mm * np.float32(1.0 / voxel_mm), 0.0, 1.0)


def _ellipse(g: _Grid, cx: Any, cy: Any, ax: Any, ay: Any) -> np.ndarray:
    """Approximate signed distance (mm) to an ellipse cross-section; parameters may vary with t (D,1,1)."""
    rho = np.sqrt(np.square((g.x - cx) / ax) + np.square((g.y - cy) / ay))
    return (rho - 1.0) * np.minimum(ax, ay)


Box = tuple[slice, slice, slice]


def _box(g: _Grid, centre: tuple[float, float, float], radii: tuple[float, float, float]) -> Box:
    """Index slices (d, h, w) of the voxels within radii (plus one voxel) of centre (x, y, t in mm)."""
    def span(coords: np.ndarray, c: float, r: float, step: float) -> slice:
        index = np.flatnonzero(np.abs(coords - c) <= r + step)
        return slice(int(index[0]), int(index[-1]) + 1) if index.size else slice(0, 0)

    cx, cy, ct = centre
    rx, ry, rt = radii
    return (span(g.t.ravel(), ct, rt, g.spacing[0]), span(g.y.ravel(), cy, ry, g.spacing[1]),
            span(g.x.ravel(), cx, rx, g.spacing[2]))


def _crop(g: _Grid, box: Box) -> _Grid:
    return _Grid(x=g.x[:, :, box[2]], y=g.y[:, box[1], :], t=g.t[box[0]], spacing=g.spacing)


def _ellipsoid(g: _Grid, centre: tuple[float, float, float], radii: tuple[float, float, float]
               ) -> tuple[np.ndarray, Box]:
    """Partial-volume weight of an ellipsoid (x, y, t centre and radii, mm) inside its bounding box, and the box."""
    box = _box(g, centre, radii)
    local = _crop(g, box)
    cx, cy, ct = centre
    rx, ry, rt = radii
    rho = np.sqrt(np.square((local.x - cx) / rx) + np.square((local.y - cy) / ry) + np.square((local.t - ct) / rt))
    return _soft((rho - 1.0) * min(rx, ry), g.spacing[1]), box


_WHOLE: Box = (slice(None), slice(None), slice(None))


class _Painter:
    """HU volume and label map painted back to front: each shape blends its HU by its weight and owns the
    voxels where its weight is at least 0.5."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.hu = np.full(shape, -1000.0, dtype=np.float32)
        self.label = np.zeros(shape, dtype=np.uint8)

    def paint(self, weight: np.ndarray, value: Any, label: int | None = None, box: Box = _WHOLE) -> None:
        """Blend `value` (HU, scalar or broadcastable to the box) with `weight` over the voxels of `box`."""
        hu = self.hu[box]  # a view: in-place updates reach the volume
        weight = np.broadcast_to(weight, hu.shape)
        hu += (value - hu) * weight
        if label is not None:
            self.label[box][weight >= 0.5] = label


@dataclass
class _Body:
    """Per-study anatomy parameters (mm) that lesions and text need."""

    diaphragm_right: float  # depth of the right dome below the scan top
    diaphragm_left: float
    apex: float
    cavity_ax: np.ndarray  # (D,1,1) semi-axes of the inner body wall
    cavity_ay: np.ndarray
    lung_centre_y: float


def _draw_anatomy(rng: np.random.Generator, g: _Grid, coverage: float) -> tuple[_Painter, _Body]:
    depth, size, _ = g.shape
    p = _Painter(g.shape)
    sxy = g.spacing[1]
    t_norm = g.t / coverage  # 0 top .. 1 bottom
    # body outline: a little wider in the chest, rounder in the abdomen
    ax0, ay0 = rng.uniform(135, 170), rng.uniform(95, 120)
    body_ax = ax0 * (1.0 + 0.05 * np.cos(np.pi * t_norm)) * np.float32(1.0)
    body_ay = ay0 * (1.0 - 0.03 * np.cos(np.pi * t_norm))
    body_cy = np.float32(rng.uniform(-5, 5))
    # table under the patient (posterior = negative y)
    table = np.abs(g.y - (body_cy - ay0 - 22.0)) - 4.0
    p.paint(_soft(np.maximum(table, np.abs(g.x) - 0.85 * ax0), sxy), 150.0)
    fat = rng.uniform(8, 28)
    muscle = rng.uniform(8, 14)
    p.paint(_soft(_ellipse(g, 0.0, body_cy, body_ax, body_ay), sxy), -100.0, _ID["body"])
    p.paint(_soft(_ellipse(g, 0.0, body_cy, body_ax - fat, body_ay - fat), sxy), 50.0)
    cav_ax, cav_ay = body_ax - fat - muscle, body_ay - fat - muscle
    cavity = _soft(_ellipse(g, 0.0, body_cy, cav_ax, cav_ay), sxy)
    apex = rng.uniform(8, 20)
    dia_r = coverage * rng.uniform(0.40, 0.46)
    dia_l = dia_r + rng.uniform(8, 20)
    lung_cy = float(body_cy) + 0.05 * ay0
    # cavity contents: mediastinal fat and soft tissue in the chest; in the abdomen bowel loops (walls and fluid)
    # in visceral fat, with gas in some loops
    mix = smooth_noise(rng, g.shape, (max(2, depth // 3), max(4, size // 5), max(4, size // 5)))
    abdomen = g.t > dia_r - 10.0
    contents = np.where(abdomen, np.where(mix > -0.15, 30.0, -95.0), np.where(mix > 0.3, 35.0, -80.0))
    contents = np.where(abdomen & (mix > 0.7), -850.0, contents).astype(np.float32)
    p.paint(cavity, contents)

    # ribs: oblique bands in a shell just inside the muscle wall, chest only
    shell = np.maximum(_ellipse(g, 0.0, body_cy, cav_ax + 6.0, cav_ay + 6.0),
                       -_ellipse(g, 0.0, body_cy, cav_ax - 2.0, cav_ay - 2.0))
    phase = (g.t + 30.0 * (g.y - body_cy) / ay0) / 24.0
    bands = np.sin(np.float32(2 * np.pi) * phase) > 0.3
    p.paint(_soft(shell, sxy) * bands * (g.t < dia_l + 40.0), 650.0)

    # spine: vertebral body, canal, posterior elements, over the whole scan
    spine_y = float(body_cy) - float(ay0) + fat + muscle + 22.0
    vertebra = _ellipse(g, 0.0, spine_y, 19.0, 16.0)
    posterior = _ellipse(g, 0.0, spine_y - 30.0, 9.0, 14.0)
    canal = _ellipse(g, 0.0, spine_y - 23.0, 8.0, 7.0)
    p.paint(_soft(np.minimum(vertebra, posterior), sxy), 700.0, _ID["spine"])
    p.paint(_soft(canal, sxy), 20.0, _ID["body"])
    p.paint(_soft(_ellipse(g, -22.0, spine_y + 26.0, 11.0, 11.0), sxy), 40.0, _ID["aorta"])

    # heart, left-anterior, sitting on the diaphragm
    heart_t = dia_l - rng.uniform(40, 50)
    heart_box, box = _ellipsoid(g, (-rng.uniform(15, 30), lung_cy + 25.0, heart_t), (60.0, 48.0, 52.0))
    p.paint(heart_box, 40.0, _ID["heart"], box)
    heart = np.zeros(g.shape, dtype=np.float32)
    heart[box] = heart_box

    # liver under the right dome; spleen under the left
    liver_shape, box = _ellipsoid(g, (0.3 * float(ax0), lung_cy - 5.0, dia_r + rng.uniform(55, 65)),
                                  (0.62 * float(ax0), 0.8 * float(ay0), rng.uniform(70, 80)))
    local = _crop(g, box)
    ax_local, ay_local = cav_ax[box[0]], cav_ay[box[0]]
    dome_r = dia_r + 28.0 * (np.square((local.x - 0.5 * ax_local) / (0.45 * ax_local))
                             + np.square((local.y - lung_cy) / ay_local))
    liver = np.minimum(np.minimum(liver_shape, cavity[box]), _soft(dome_r - local.t, g.spacing[0]))
    p.paint(liver, 60.0 + rng.uniform(-5, 5), _ID["liver"], box)
    spleen, box = _ellipsoid(g, (-0.62 * float(ax0), spine_y + 25.0, dia_l + 45.0), (28.0, 40.0, 50.0))
    p.paint(np.minimum(spleen, cavity[box]), 50.0, _ID["spleen"], box)

    # kidneys, posterior beside the spine; renal sinus fat medially
    kidney_hu = rng.uniform(32, 40)
    for side, sign, centre_t in (("right", 1.0, dia_r + rng.uniform(115, 130)),
                                 ("left", -1.0, dia_l + rng.uniform(95, 110))):
        cx = sign * rng.uniform(58, 70)
        fat_weight, box = _ellipsoid(g, (cx, spine_y + 12.0, centre_t), (37.0, 34.0, 64.0))  # perirenal fat
        p.paint(fat_weight, -95.0, _ID["body"], box)
        kidney, box = _ellipsoid(g, (cx, spine_y + 12.0, centre_t), (27.0, 24.0, 52.0))
        p.paint(kidney, kidney_hu, _ID[f"kidney_{side}"], box)
        sinus, box = _ellipsoid(g, (cx - sign * 13.0, spine_y + 14.0, centre_t), (9.0, 9.0, 24.0))
        p.paint(sinus, -90.0, _ID["body"], box)

    # lungs: rounded apices, bases on diaphragm domes that dip laterally and posteriorly, minus the mediastinum
    # (only the slices above the lowest point a dome can reach are computed)
    chest = np.flatnonzero(g.t.ravel() <= dia_l + 45.0 + 25.0 + g.spacing[0])
    box = (slice(int(chest[0]), g.shape[0]) if chest.size else slice(0, 0), slice(None), slice(None))
    c = _crop(g, box)
    ax_c, ay_c = cav_ax[box[0]], cav_ay[box[0]]
    taper = np.sqrt(np.clip((c.t - apex) / 70.0, 0.0, 1.0)) + 1e-3
    lung_texture = smooth_noise(rng, (len(c.t), size, size), (max(2, len(c.t) // 3), max(3, size // 6), max(3, size // 6)))
    vessels = ridges(smooth_noise(rng, (len(c.t), size, size), (max(3, len(c.t) // 2), max(4, size // 4),
                                                                  max(4, size // 4))), 0.08)
    lung_hu = -860.0 + 25.0 * lung_texture + 30.0 * np.clip(-(c.y - lung_cy) / ay0, 0, 1) + 250.0 * vessels
    mediastinum = np.maximum(heart[box], _soft(np.abs(c.x) - 18.0, sxy) * (c.y > spine_y))
    for side, sign, dome_t in (("right", 1.0, dia_r), ("left", -1.0, dia_l)):
        cx = sign * 0.48 * ax_c
        section = _ellipse(c, cx, lung_cy, 0.44 * ax_c * taper, 0.82 * ay_c * taper)
        dome = dome_t + 45.0 * np.square((c.x - cx) / (0.44 * ax_c)) + 25.0 * np.clip(-(c.y - lung_cy) / ay_c, 0, 1)
        lung = np.minimum(np.minimum(_soft(section, sxy), _soft(c.t - dome, g.spacing[0])), 1.0 - mediastinum)
        p.paint(lung, lung_hu, _ID[f"lung_{side}"], box)
    body = _Body(diaphragm_right=dia_r, diaphragm_left=dia_l, apex=apex, cavity_ax=cav_ax, cavity_ay=cav_ay,
                 lung_centre_y=lung_cy)
    return p, body


# ------------------------------------------------------------------------------------------------ lesions


def _lobe_map(g: _Grid, body: _Body, side: str) -> np.ndarray:
    """Lobe index per voxel of one lung (0 upper, 1 middle (right only), 2 lower), from two fissure surfaces.

    Oblique fissure: from posterior-high to anterior-low; behind/below it is the lower lobe. Horizontal
    fissure (right): the part of the upper region below mid-height is the middle lobe.
    """
    base = body.diaphragm_right if side == "right" else body.diaphragm_left
    height = base - body.apex
    oblique = body.apex + 0.5 * height + 0.9 * (g.y - body.lung_centre_y)
    lower = g.t > oblique
    lobe = np.where(lower, 2, 0).astype(np.uint8)
    if side == "right":
        middle = ~lower & (g.t > body.apex + 0.55 * height) & (g.y > body.lung_centre_y - 10.0)
        lobe = np.where(middle, 1, lobe).astype(np.uint8)
    return np.broadcast_to(lobe, g.shape)


def _segment_of(g: _Grid, liver: np.ndarray) -> np.ndarray:
    """Couinaud segment index (into SEGMENTS) of every liver voxel, from its position within the liver.

    Across the liver from its right edge: right lobe (first half; anterior V/VIII, posterior VI/VII), then
    IV, then the left lateral segments II/III; each split into superior and inferior halves.
    """
    d, h, w = np.nonzero(liver)
    x, y, t = g.x[0, 0, w], g.y[0, h, 0], g.t[d, 0, 0]
    across = (x.max() - x) / max(float(x.max() - x.min()), 1e-3)  # 0 right edge .. 1 left tip
    superior = t < (t.min() + t.max()) / 2
    anterior = y > y.mean()
    segment = np.where(
        across > 0.72, np.where(superior, 0, 1),
        np.where(across > 0.5, np.where(superior, 2, 3),
                 np.where(anterior, np.where(superior, 7, 4), np.where(superior, 6, 5))))
    out = np.full(liver.shape, -1, dtype=np.int8)
    out[d, h, w] = segment
    return out


def _place_sphere(rng: np.random.Generator, g: _Grid, organ: np.ndarray, region: np.ndarray, diameter_mm: float,
                  min_inside: float) -> tuple[tuple[int, int, int], float]:
    """Centre voxel in `region` and diameter (shrunk if needed) of a sphere that lies within `organ`.

    Tries 48 random centres per size; the sphere is tested on a stencil of voxel offsets; if no size fits, the
    best centre at the smallest tried size is used. Returns ((d, h, w), diameter_mm).
    """
    candidates = np.argwhere(region)
    if len(candidates) == 0:
        raise RuntimeError("ct generator bug: empty placement region")
    picks = candidates[rng.choice(len(candidates), size=min(48, len(candidates)), replace=False)]
    spacing = np.asarray(g.spacing, dtype=np.float64)
    shape = np.asarray(g.shape)
    best = (0.0, picks[0], diameter_mm)
    for _ in range(8):
        reach = np.floor(diameter_mm / 2 / spacing).astype(int)
        grids = np.meshgrid(*(np.arange(-r, r + 1) for r in reach), indexing="ij")
        offsets = np.stack([q.ravel() for q in grids], axis=1)
        offsets = offsets[np.sum(np.square(offsets * spacing), axis=1) <= (diameter_mm / 2) ** 2]
        points = picks[:, None, :] + offsets[None]  # (K, S, 3)
        valid = np.all((points >= 0) & (points < shape), axis=-1)
        clipped = np.clip(points, 0, shape - 1)
        inside = organ[clipped[..., 0], clipped[..., 1], clipped[..., 2]] & valid
        fraction = inside.mean(axis=1)
        k = int(np.argmax(fraction))
        if fraction[k] >= best[0]:
            best = (float(fraction[k]), picks[k], diameter_mm)
        if fraction[k] >= min_inside:
            return tuple(int(v) for v in picks[k]), round(float(diameter_mm), 1)
        diameter_mm *= 0.85
    return tuple(int(v) for v in best[1]), round(float(best[2]), 1)


def _paint_sphere(p: _Painter, g: _Grid, centre_voxel: tuple[int, int, int], diameter_mm: float,
                  value: float) -> np.ndarray:
    """Paint a sphere of `value` HU centred on a voxel; return its mask (weight >= 0.5) over the whole volume."""
    d, h, w = centre_voxel
    radius = diameter_mm / 2
    weight, box = _ellipsoid(g, (float(g.x[0, 0, w]), float(g.y[0, h, 0]), float(g.t[d, 0, 0])), (radius,) * 3)
    p.paint(weight, value, box=box)
    mask = np.zeros(g.shape, dtype=bool)
    mask[box] = weight >= 0.5
    return mask


def _draw_size(rng: np.random.Generator, g: _Grid, size_range: tuple[float, float], min_voxels: float) -> float:
    """A lesion diameter from `size_range`, but at least `min_voxels` in-plane voxels: on coarse grids a smaller
    low-contrast lesion would be lost in partial volume and noise."""
    return max(float(rng.uniform(*size_range)), min_voxels * g.spacing[1])


def _draw_lesions(rng: np.random.Generator, g: _Grid, body: _Body, p: _Painter, organs: dict[str, np.ndarray],
                  config: CTConfig) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    findings: list[dict[str, Any]] = []
    masks: dict[str, np.ndarray] = {}
    present = {name: bool(rng.random() < float(config.prevalence[name])) for name in LESIONS}

    nodule: dict[str, Any] = {"name": "lung_nodule", "present": present["lung_nodule"]}
    if nodule["present"]:
        side = str(rng.choice(("right", "left")))
        lung = organs[f"lung_{side}"]
        lobes = _lobe_map(g, body, side)
        names = LOBES[side]
        weights = np.array(LOBE_WEIGHTS[side])
        counts = np.array([np.count_nonzero(lung & (lobes == (i if side == "right" else 2 * i))) for i in range(len(names))])
        weights = np.where(counts > 0, weights, 0.0)
        choice = int(rng.choice(len(names), p=weights / weights.sum()))
        code = choice if side == "right" else 2 * choice
        size = _draw_size(rng, g, config.nodule_size_mm, 1.0)
        centre, size = _place_sphere(rng, g, lung, lung & (lobes == code), size, 0.98)
        lobe = names[choice]
        masks["lung_nodule"] = _paint_sphere(p, g, centre, size, rng.uniform(10, 60))
        nodule.update(side=side, lobe=lobe, location=f"{side} {lobe} lobe", size_mm=size, mask="lung_nodule",
                      centre_voxel=list(centre))
    findings.append(nodule)

    lesion: dict[str, Any] = {"name": "liver_lesion", "present": present["liver_lesion"]}
    if lesion["present"]:
        liver = organs["liver"]
        segments = _segment_of(g, liver)
        available = [i for i in range(len(SEGMENTS)) if np.any(segments == i)]
        index = int(rng.choice(available))
        size = _draw_size(rng, g, config.liver_lesion_size_mm, 3.0)
        centre, size = _place_sphere(rng, g, liver, segments == index, size, 0.95)
        segment = SEGMENTS[int(segments[centre])]
        value = float(rng.uniform(5, 35))
        masks["liver_lesion"] = _paint_sphere(p, g, centre, size, value)
        lesion.update(segment=segment, lobe="right" if segment in RIGHT_SEGMENTS else "left", size_mm=size,
                      hu=round(value), mask="liver_lesion", centre_voxel=list(centre))
    findings.append(lesion)

    cyst: dict[str, Any] = {"name": "kidney_cyst", "present": present["kidney_cyst"]}
    if cyst["present"]:
        side = str(rng.choice(("right", "left")))
        kidney = organs[f"kidney_{side}"]
        size = _draw_size(rng, g, config.kidney_cyst_size_mm, 3.0)
        centre, size = _place_sphere(rng, g, kidney, kidney, size, 0.85)
        value = float(rng.uniform(-5, 10))
        masks["kidney_cyst"] = _paint_sphere(p, g, centre, size, value)
        cyst.update(side=side, size_mm=size, hu=round(value), mask="kidney_cyst", centre_voxel=list(centre))
    findings.append(cyst)
    return findings, masks


# --------------------------------------------------------------------------------------------------- text

REPORT_PROMPTS = (
    "Write the findings and impression for this CT of the chest and abdomen.",
    "Describe this CT volume.",
    "Report this non-contrast chest and abdomen CT.",
)


def _mm(value: float) -> str:
    return f"{round(value)} mm"


def ct_report(rng: np.random.Generator, findings: list[dict[str, Any]]) -> str:
    """FINDINGS organ by organ (each lesion stated, absent ones negated) and a numbered IMPRESSION."""
    by_name = {f["name"]: f for f in findings}
    nodule, liver, cyst = by_name["lung_nodule"], by_name["liver_lesion"], by_name["kidney_cyst"]
    parts = [str(rng.choice(["Non-contrast CT of the chest and upper abdomen.", "CT chest/abdomen without contrast.",
                             "Unenhanced CT from the lung apices to the kidneys."]))]
    impression = []
    if nodule["present"]:
        size = _mm(nodule["size_mm"])
        parts.append(str(rng.choice([f"Lungs: a {size} solid nodule in the {nodule['location']}.",
                                     f"There is a {size} pulmonary nodule in the {nodule['location']}.",
                                     f"A solid nodule measuring {size} is seen in the {nodule['location']}."])))
        impression.append(f"{size} nodule in the {nodule['location']}.")
    else:
        parts.append(str(rng.choice(["The lungs are clear without pulmonary nodules.", "No pulmonary nodule.",
                                     "Lungs: no nodule or mass."])))
    if liver["present"]:
        size, segment = _mm(liver["size_mm"]), liver["segment"]
        parts.append(str(rng.choice([
            f"Liver: a {size} hypodense lesion in segment {segment} ({liver['hu']} HU).",
            f"There is a {size} hypoattenuating lesion in hepatic segment {segment}.",
            f"A hypodense focal liver lesion measuring {size} is present in segment {segment} of the {liver['lobe']} lobe.",
        ])))
        impression.append(f"{size} hypodense liver lesion in segment {segment}.")
    else:
        parts.append(str(rng.choice(["The liver is normal in size and attenuation without focal lesion.",
                                     "No focal liver lesion.", "Liver: unremarkable."])))
    if cyst["present"]:
        size = _mm(cyst["size_mm"])
        parts.append(str(rng.choice([
            f"Kidneys: a {size} simple cyst in the {cyst['side']} kidney ({cyst['hu']} HU).",
            f"There is a {size} fluid-attenuation cyst in the {cyst['side']} kidney.",
            f"A simple {cyst['side']} renal cyst measuring {size} is noted.",
        ])))
        impression.append(f"{size} simple cyst in the {cyst['side']} kidney.")
    else:
        parts.append(str(rng.choice(["The kidneys are unremarkable.", "No renal cyst or mass.",
                                     "Kidneys: normal."])))
    parts.append(str(rng.choice(["The spine is intact.", "No aggressive osseous lesion.", "Bones: unremarkable."])))
    if impression:
        summary = " ".join(f"{i + 1}. {text}" for i, text in enumerate(impression))
    else:
        summary = str(rng.choice(["No significant abnormality.", "Normal CT of the chest and upper abdomen.",
                                  "No focal lesion in the lungs, liver or kidneys."]))
    return f"FINDINGS: {' '.join(parts)}\nIMPRESSION: {summary}"


def ct_questions(rng: np.random.Generator, findings: list[dict[str, Any]]) -> list[SynthQuestion]:
    """Closed (presence, side) and open (location, size, affected organs) questions from the truth."""
    def yes(value: bool) -> str:
        return "yes" if value else "no"

    def pick(options: list[str]) -> str:
        return str(rng.choice(options))

    by_name = {f["name"]: f for f in findings}
    nodule, liver, cyst = by_name["lung_nodule"], by_name["liver_lesion"], by_name["kidney_cyst"]
    questions = [
        SynthQuestion(pick(["Is there a lung nodule?", "Is a pulmonary nodule present?"]),
                      yes(nodule["present"]), "closed", "lung_nodule"),
        SynthQuestion(pick(["Is there a focal liver lesion?", "Is a liver lesion present?"]),
                      yes(liver["present"]), "closed", "liver_lesion"),
        SynthQuestion(pick(["Is there a kidney cyst?", "Is a renal cyst present?"]),
                      yes(cyst["present"]), "closed", "kidney_cyst"),
    ]
    organs = [organ for organ, f in (("lung", nodule), ("liver", liver), ("kidney", cyst)) if f["present"]]
    questions.append(SynthQuestion(pick(["Which organs have a lesion?", "Where are the abnormalities?"]),
                                   ", ".join(organs) if organs else "none", "open", "location"))
    if nodule["present"]:
        asked = str(rng.choice(("right", "left")))
        questions += [
            SynthQuestion(f"Is the nodule in the {asked} lung?", yes(nodule["side"] == asked), "closed", "lung_nodule"),
            SynthQuestion(pick(["In which lobe is the nodule?", "Where is the lung nodule?"]),
                          nodule["location"], "open", "lung_nodule"),
            SynthQuestion(pick(["What is the size of the lung nodule?", "How large is the nodule?"]),
                          _mm(nodule["size_mm"]), "open", "lung_nodule"),
        ]
    if liver["present"]:
        questions += [
            SynthQuestion(pick(["Which liver segment contains the lesion?", "In which segment is the liver lesion?"]),
                          f"segment {liver['segment']}", "open", "liver_lesion"),
            SynthQuestion(pick(["How large is the liver lesion?", "What is the size of the liver lesion?"]),
                          _mm(liver["size_mm"]), "open", "liver_lesion"),
        ]
    if cyst["present"]:
        questions += [
            SynthQuestion(pick(["Which kidney has a cyst?", "On which side is the renal cyst?"]),
                          cyst["side"], "open", "kidney_cyst"),
            SynthQuestion(pick(["What is the size of the kidney cyst?", "How large is the renal cyst?"]),
                          _mm(cyst["size_mm"]), "open", "kidney_cyst"),
        ]
    return questions


# ------------------------------------------------------------------------------------------------ study


def render_volume(rng: np.random.Generator, config: CTConfig
                  ) -> tuple[np.ndarray, tuple[float, float, float], dict[str, np.ndarray], list[dict[str, Any]], float]:
    """(HU int16 (D, H, W), spacing_mm, masks, lesion findings, noise sd in HU) of one study."""
    depth, size = config.slices, int(config.size_px)
    coverage = float(rng.uniform(330, 400))
    field_mm = float(rng.uniform(360, 500))
    g = _make_grid(depth, size, coverage, field_mm)
    painter, body = _draw_anatomy(rng, g, coverage)
    organs = {name: painter.label == _ID[name] for name in ORGANS}
    organs["body"] = painter.label > 0
    findings, lesion_masks = _draw_lesions(rng, g, body, painter, organs, config)
    noise_sd = float(rng.uniform(4, 8))
    hu = painter.hu + smooth_noise(rng, g.shape, (max(2, depth // 4), max(3, size // 8), max(3, size // 8))) * 6.0
    hu += rng.standard_normal(g.shape, dtype=np.float32) * np.float32(noise_sd)
    pixels = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return pixels, tuple(round(s, 4) for s in g.spacing), {**organs, **lesion_masks}, findings, noise_sd


def generate_study(rng: np.random.Generator, index: int, config: CTConfig) -> SynthStudy:
    """One CT study (one synthetic patient): volume, organ and lesion masks, truth, report and questions."""
    # independent streams: changing the text never changes the voxels, and vice versa
    image_rng, text_rng, misc_rng = rng.spawn(3)
    pixels, spacing, masks, findings, noise_sd = render_volume(image_rng, config)
    acquired = (np.datetime64("2022-01-01") + np.timedelta64(int(misc_rng.integers(0, 730)), "D")).astype(str)
    image = SynthImage(role="current", pixels=pixels, kind="ct", spacing_mm=spacing, masks=masks,
                       acquired=acquired.replace("-", ""))
    labels = {
        "kind": "ct",
        "present": {f["name"]: f["present"] for f in findings},
        "noise_sd_hu": round(noise_sd, 2),
        "organs": list(ORGANS),
    }
    report = ct_report(text_rng, findings)
    return SynthStudy(
        study_id=f"ct{index:06d}", patient_id=f"ctpat{index:06d}", images=[image], findings=findings,
        labels=labels, report=report, questions=ct_questions(text_rng, findings),
        report_prompt=str(text_rng.choice(REPORT_PROMPTS)),
    )
