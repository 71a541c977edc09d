"""Show what medvlm sees in an image, DICOM file, NIfTI / .npy volume or DICOM series folder.

Prints the kind (image2d, dicom, volume, series), shape, stored dtype, value range (HU for CT, no display
window applied, MONOCHROME1 inverted as medvlm loads it), spacing, modality, photometric interpretation,
DICOM transfer syntax and the number of frames or slices. Volumes are described after reorientation to RAS
(shape is D x H x W); a 4D NIfTI is described by its first volume.
Python: medvlm.imaging.inspect_file(path) returns the same information as a dict.

examples:
  medvlm inspect chest.dcm
  medvlm inspect scans/ct_series/ --json
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", help="an image (PNG, JPEG, TIFF, BMP), DICOM file, NIfTI, .npy, or a DICOM series folder"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def run(args: argparse.Namespace) -> int:
    from medvlm.imaging import MedicalImageError, inspect_file
    from medvlm.imaging.inspect import format_table

    try:
        info = inspect_file(args.path)
    except MedicalImageError as exc:
        print(f"medvlm inspect: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=2) if args.json else format_table(info))
    return 0
