"""Contact sheet of a synthetic dataset: studies with their labels, to look at.

Works for every kind: gray and RGB images (PNG or DICOM) are shown as they are, with the prior beside the
current image; a CT volume is shown as a montage of three axial slices (lung-to-soft-tissue window).
Masks of present findings are outlined in colour on the current image. Below each study: its id, split and
the present findings with their attributes (and change labels for temporal studies).
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from medvlm.fileio import atomic_path

OUTLINE_COLOURS = [(255, 64, 64), (64, 200, 255), (255, 200, 0), (120, 255, 120), (255, 120, 255), (255, 150, 60),
                   (160, 130, 255), (0, 255, 200), (255, 255, 255), (200, 200, 120)]
CT_WINDOW = (-350.0, 1500.0)  # center, width: lungs and soft tissue both readable
HIDDEN_KEYS = ("name", "present", "mask", "prior_mask", "prior", "prior_present", "change")


def _to_display(pixels: np.ndarray) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) for display."""
    if pixels.dtype == np.uint8:
        return pixels
    x = pixels.astype(np.float32)
    if pixels.dtype == np.uint16:
        x = x / 65535.0
    elif x.max() > 1.0 or x.min() < 0.0:
        x = (x - x.min()) / max(float(x.max() - x.min()), 1e-6)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def _load_2d(root: Path, rel: str) -> np.ndarray:
    from medvlm.imaging import load_image

    return _to_display(np.asarray(load_image(root / rel).pixels))


def _ct_montage(root: Path, rel: str) -> tuple[np.ndarray, list[int]]:
    """Three axial slices side by side (radiological display) and the slice indices used."""
    from medvlm.imaging import load_volume
    from medvlm.imaging.window import window

    voxels = load_volume(root / rel).voxels
    depth = voxels.shape[0]
    slices = [int(depth * f) for f in (0.3, 0.5, 0.7)]
    tiles = [(window(voxels[d, ::-1, ::-1], *CT_WINDOW) * 255 + 0.5).astype(np.uint8) for d in slices]
    return np.concatenate(tiles, axis=1), slices


def _load_mask(root: Path, rel: str, ct_slice: list[int] | None) -> np.ndarray | None:
    if rel.endswith(".nii.gz"):
        if ct_slice is None:
            return None
        from medvlm.imaging import load_volume

        mask = load_volume(root / rel).voxels > 0.5
        return np.concatenate([mask[d, ::-1, ::-1] for d in ct_slice], axis=1)
    from PIL import Image

    with Image.open(root / rel) as image:
        return np.asarray(image) > 127


def _outline(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def _resize(rgb: np.ndarray, height: int) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    width = max(1, round(w * height / h))
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR))


def describe(label: dict[str, Any]) -> list[str]:
    """Short lines describing one labels.jsonl row: present findings with attributes, and changes."""
    lines = []
    for f in label.get("findings", []):
        attrs = ", ".join(f"{k}={v}" for k, v in f.items() if k not in HIDDEN_KEYS and not isinstance(v, (dict, list)))
        change = f" [{f['change']}]" if f.get("change") else ""
        if f.get("present"):
            lines.append(f"{f['name']}" + (f" ({attrs})" if attrs else "") + change)
        elif f.get("change"):
            lines.append(f"{f['name']}{change}")
    return lines or ["normal"]


def write_preview(dataset: str | os.PathLike, out: str | os.PathLike, n: int = 16, *, tile_px: int = 192,
                  columns: int | None = None, outline_masks: bool = True) -> Path:
    """Draw the first `n` studies of a dataset folder (from labels.jsonl) on one PNG sheet; returns `out`."""
    from PIL import Image, ImageDraw, ImageFont

    root = Path(dataset)
    labels_path = root / "labels.jsonl"
    if not labels_path.is_file():
        raise FileNotFoundError(f"{labels_path} not found: pass a folder written by `medvlm synth <kind>`")
    labels = []
    with open(labels_path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if len(labels) >= n:
                break
            try:
                labels.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{labels_path} line {line_no}: not valid JSON ({exc}); regenerate the dataset") from exc
    if not labels:
        raise ValueError(f"{labels_path} holds no studies")

    font = ImageFont.load_default()
    cells = []
    for label in labels:
        images, ct_slices = [], None
        for i, rel in enumerate(label["images"]):
            if rel.endswith((".nii.gz", ".nii")):
                pixels, slices = _ct_montage(root, rel)
                ct_slices = slices if i == 0 else ct_slices
            else:
                pixels = _load_2d(root, rel)
            rgb = np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels.copy()
            if i == 0 and outline_masks:
                colour_index = 0
                for f in label.get("findings", []):
                    if not f.get("present") or not f.get("mask"):
                        continue
                    mask = _load_mask(root, f["mask"], ct_slices)
                    if mask is not None and mask.shape == rgb.shape[:2]:
                        rgb[_outline(mask)] = OUTLINE_COLOURS[colour_index % len(OUTLINE_COLOURS)]
                    colour_index += 1
            images.append(_resize(rgb, tile_px))
        strip = np.concatenate([np.pad(im, ((0, 0), (0, 4), (0, 0))) for im in images], axis=1)
        header = f"{label['study_id']} ({label.get('split', '?')})" + ("  current | prior" if len(images) > 1 else "")
        cells.append((strip, [header] + describe(label)))

    cell_w = max(strip.shape[1] for strip, _ in cells)
    chars = max(20, cell_w // 6)
    wrapped = [[w for line in lines for w in textwrap.wrap(line, chars) or [""]] for _, lines in cells]
    line_h = 12
    text_h = line_h * max(len(w) for w in wrapped) + 6
    cell_h = tile_px + text_h
    columns = columns or max(1, min(len(cells), int(np.ceil(np.sqrt(len(cells) * cell_h / cell_w)))))
    rows = int(np.ceil(len(cells) / columns))
    sheet = Image.new("RGB", (columns * (cell_w + 8), rows * (cell_h + 8)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for k, ((strip, _), lines) in enumerate(zip(cells, wrapped, strict=True)):
        x0, y0 = (k % columns) * (cell_w + 8) + 4, (k // columns) * (cell_h + 8) + 4
        sheet.paste(Image.fromarray(strip), (x0, y0))
        for j, line in enumerate(lines):
            draw.text((x0, y0 + tile_px + 3 + j * line_h), line, fill=(230, 230, 230), font=font)
    out = Path(out)
    with atomic_path(out, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG")
    return out
