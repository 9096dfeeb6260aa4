"""``trajplate posetraj-data``: clips rendered by real headless Blender (subprocess), exported by the add-on's
exporter; the tracks follow the rendered object and the training loader reads the layout."""

import numpy as np
import pytest
from trajplate.cli import main
from trajplate.pipelines.posetraj.data import BUNDLE, VIDEO, PoseTrajClips
from trajplate.shot import load_shot
from trajplate.video import read_mp4

W, H, T = 96, 64, 6
# Point-symmetric about their origin: the silhouette is symmetric about the projected origin up to perspective.
SYMMETRIC = {"cube", "uv_sphere", "ico_sphere", "cylinder", "torus"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("posetraj-data")
    assert main(["posetraj-data", str(out), "--clips", "2", "--width", str(W), "--height", str(H),
                 "--frames", str(T), "--seed", "3"]) == 0
    return out


def test_clips_hold_a_bundle_and_the_rendered_video(data_dir):
    clips = sorted(p.name for p in data_dir.iterdir())
    assert clips == ["clip_00000", "clip_00001"]
    for clip in clips:
        shot = load_shot(data_dir / clip / BUNDLE)
        video = read_mp4(data_dir / clip / VIDEO).frames
        assert (shot.width, shot.height, shot.num_frames, shot.num_entities) == (W, H, T, 1)
        assert video.shape == (T, H, W, 3)
        assert shot.depth is not None and shot.box_3d_world.shape == (T, 1, 8, 3)
        # the MP4 holds the beauty renders: its first frame is the bundle's first-frame render (H.264 at CRF 17)
        assert np.abs(video[0].astype(int) - shot.first_frame).mean() < 6


def test_tracks_follow_the_rendered_object(data_dir):
    for clip in sorted(data_dir.iterdir()):
        shot = load_shot(clip / BUNDLE)
        moved = np.linalg.norm(shot.track_2d[-1, 0] - shot.track_2d[0, 0]) + 0.0
        rotated = not np.allclose(shot.entity_quaternion_wxyz[0, 0], shot.entity_quaternion_wxyz[-1, 0])
        assert moved > 2 or rotated  # every path kind animates the object
        checked = 0
        for f in range(T):
            mask = shot.instance_mask[f] == 1
            if not shot.track_visible[f, 0] or mask.sum() < 20:
                continue
            rows, cols = np.nonzero(mask)
            if cols.min() == 0 or rows.min() == 0 or cols.max() == W - 1 or rows.max() == H - 1:
                continue  # cut by the image border: the silhouette centroid is not the object's
            centroid = np.array([cols.mean(), rows.mean()]) + 0.5  # pixel centres at +0.5
            x, y = shot.track_2d[f, 0]
            if shot.meta.entities[0].name in SYMMETRIC:
                assert np.linalg.norm(shot.track_2d[f, 0] - centroid) < 1.0, (clip.name, f)
            else:  # a cone's silhouette centroid sits towards its base: the origin is still inside its extent
                assert cols.min() <= x <= cols.max() + 1 and rows.min() <= y <= rows.max() + 1, (clip.name, f)
            checked += 1
        assert checked >= T // 2, clip.name


def test_training_loader_reads_the_clips(data_dir):
    clips = PoseTrajClips(data_dir, (64, 64))
    clip = clips[0]
    assert clip.pixel_values.shape == clip.maps.shape == (14, 3, 64, 64)
    assert (clip.maps > -1).any()
