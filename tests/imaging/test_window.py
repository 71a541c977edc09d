"""CT windowing and its named presets."""

from __future__ import annotations

import numpy as np
import pytest

from medvlm.imaging import WINDOW_PRESETS, window


def test_window_maps_the_range_linearly_to_0_1():
    hu = np.array([-2000.0, -1000.0, 40.0, 240.0, 3000.0])
    out = window(hu, 40, 400)  # mediastinum: -160 .. 240 HU
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0])


def test_presets_are_the_usual_radiology_windows():
    assert WINDOW_PRESETS["lung"] == (-600.0, 1500.0)
    assert WINDOW_PRESETS["mediastinum"] == (40.0, 400.0)
    assert WINDOW_PRESETS["bone"] == (400.0, 1800.0)
    assert WINDOW_PRESETS["abdomen"] == (50.0, 400.0)
    lung = window(np.array([-1000.0, -600.0, 200.0]), *WINDOW_PRESETS["lung"])
    assert lung[0] == pytest.approx(0.2333, abs=1e-3) and lung[1] == pytest.approx(0.5) and lung[2] == 1.0


def test_window_width_must_be_positive():
    with pytest.raises(ValueError, match="width"):
        window(np.zeros(3), 0, 0)
