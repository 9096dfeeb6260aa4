"""The synthetic shot of ``support.synthetic`` is what the reader accepts, and the reader catches convention mistakes."""

import numpy as np
import pytest
from support.synthetic import synthetic_parts, synthetic_shot
from trajplate.shot import BundleError, Shot


def test_synthetic_shot_is_accepted_and_has_visible_entities():
    shot = synthetic_shot()
    assert shot.num_frames == 12 and shot.num_entities == 2
    assert shot.track_visible.any() and shot.box_2d_valid.any()
    assert np.isinf(shot.depth).any() and np.isfinite(shot.depth).any()
    assert set(np.unique(shot.instance_mask)) == {0, 1, 2}


def test_reader_catches_a_convention_mistake():
    """Writing c2w in OpenCV axes instead of Blender axes (the classic mistake) is refused."""
    meta, arrays, _ = synthetic_parts(renders=False)
    arrays["camera_c2w_blender"] = np.linalg.inv(arrays["camera_w2c_opencv"])
    with pytest.raises(BundleError, match="camera_w2c_opencv"):
        Shot.from_arrays(meta, arrays)
