"""CT windowing: map Hounsfield units (or any intensities) to display values in [0, 1].

Preset values (center, width in HU) are the usual radiology defaults, as listed e.g. on Radiopaedia's
"Windowing (CT)" article: lung -600/1500, mediastinum 40/400, bone 400/1800, abdomen (soft tissue) 50/400,
brain 40/80, liver 60/150.
"""

from __future__ import annotations

import numpy as np

# name -> (center, width), in HU
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (40.0, 400.0),
    "bone": (400.0, 1800.0),
    "abdomen": (50.0, 400.0),
    "brain": (40.0, 80.0),
    "liver": (60.0, 150.0),
}


def window(array: np.ndarray, center: float, width: float) -> np.ndarray:
    """Linear window: values <= center - width/2 -> 0, >= center + width/2 -> 1, linear between; float32.

    Same shape as `array`. Use a preset with `window(hu, *WINDOW_PRESETS["lung"])`.
    """
    if not width > 0:
        raise ValueError(f"window width must be > 0; got {width}")
    low = float(center) - float(width) / 2.0
    out = (np.asarray(array, dtype=np.float32) - np.float32(low)) / np.float32(width)
    return np.clip(out, 0.0, 1.0, out=out)
