"""PoseTraj training clips: the on-disk layout ``trajplate posetraj-data`` writes and ``posetraj-train`` reads.

Layout of a data folder (one sub-folder per clip, any names, read in sorted order)::

    DATA_DIR/<clip>/shot.zip    shot bundle (exporter's: poses, K, tracks, 3D boxes, depth, masks, first frame)
    DATA_DIR/<clip>/video.mp4   the clip's rendered frames, one per exported frame, at the bundle's resolution

This is what the authors train on (a video + per-frame 2D tracks, spec §3.2), but the tracks are the exporter's exact
ones instead of CoTracker's and the maps are drawn by the inference code (:mod:`trajplate.conditioning.posetraj`),
so training and sampling see identical maps (red segments: we do not reproduce the training loader's red/blue quirk).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ...conditioning import posetraj as cond
from ...conditioning.trajectory_attention import time_map
from ...shot import Shot, load_shot
from ...video import read_mp4, write_mp4

BLENDER_SCRIPT = Path(__file__).with_name("blender_data.py")
BUNDLE = "shot.zip"
VIDEO = "video.mp4"


def write_clip(clip_dir: Path, shot: Shot, frames: np.ndarray) -> Path:
    """Write one clip: ``shot`` as ``shot.zip`` (its ``rgb_frames`` are left out: the MP4 holds them) and ``frames``
    (F, H, W, 3) uint8 RGB, one per exported frame at the shot's resolution, as ``video.mp4`` at the shot's fps.

    Raises ValueError when ``frames`` does not match the shot's frame count or resolution."""
    from ...shot import save_shot

    if frames.shape != (shot.num_frames, shot.height, shot.width, 3):
        raise ValueError(f"frames: shape {frames.shape}, the shot needs ({shot.num_frames}, {shot.height}, "
                         f"{shot.width}, 3)")
    clip_dir = Path(clip_dir)
    clip_dir.mkdir(parents=True, exist_ok=True)
    write_mp4(clip_dir / VIDEO, frames, shot.meta.fps)
    bare = Shot.from_arrays(shot.meta, shot.arrays(), first_frame=shot.first_frame)
    save_shot(bare, clip_dir / BUNDLE)
    return clip_dir


def clip_dirs(data_dir: Path) -> list[Path]:
    """Clip folders of ``data_dir`` (those holding both files), sorted. Raises FileNotFoundError when none."""
    data_dir = Path(data_dir)
    clips = sorted(p.parent for p in data_dir.glob(f"*/{BUNDLE}") if (p.parent / VIDEO).is_file())
    if not clips:
        raise FileNotFoundError(f"{data_dir}: no <clip>/{BUNDLE} + <clip>/{VIDEO} folders; make some with "
                                "`trajplate posetraj-data`")
    return clips


@dataclass
class TrainingClip:
    """pixel_values (T, 3, H, W) float32 in [−1, 1]; maps (T, 3, H, W) float32 in [−1, 1] (the authors' trajectory
    maps); camera (T, 12) float32 (:func:`~trajplate.conditioning.posetraj.camera_vectors`)."""

    pixel_values: torch.Tensor
    maps: torch.Tensor
    camera: torch.Tensor


class PoseTrajClips(torch.utils.data.Dataset):
    """The clips of a data folder at ``size`` = (W, H), ``num_frames`` generated frames picked by the inference time
    map (shot times, nearest exported frame), so a 14-frame clip is used frame for frame."""

    def __init__(self, data_dir: Path, size: tuple[int, int], num_frames: int = cond.NUM_FRAMES,
                 surface_points: int = cond.SURFACE_POINTS):
        self.clips = clip_dirs(data_dir)
        self.size, self.num_frames, self.surface_points = tuple(size), num_frames, surface_points

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> TrainingClip:
        """Raises ValueError naming the clip when its video and bundle disagree or no entity is visible."""
        clip = self.clips[index]
        shot = load_shot(clip / BUNDLE)
        video = read_mp4(clip / VIDEO).frames
        if len(video) != shot.num_frames:
            raise ValueError(f"{clip / VIDEO}: {len(video)} frames, its bundle has {shot.num_frames}; re-render it")
        try:
            tracks, _ = cond.shot_tracks(shot, num_frames=self.num_frames, surface_points=self.surface_points)
        except ValueError as exc:
            raise ValueError(f"{clip}: {exc}") from exc
        frames = video[time_map(shot.time_s, self.num_frames), :shot.height, :shot.width]  # MP4 may pad odd sizes
        frames = np.stack([cv2.resize(f, self.size, interpolation=cv2.INTER_AREA) for f in frames])
        maps = cond.maps_to_tensor_range(cond.rasterise(tracks.rescaled(self.size)))
        return TrainingClip(
            pixel_values=torch.from_numpy(cond.maps_to_tensor_range(frames)),  # same uint8 → [−1, 1] mapping
            maps=torch.from_numpy(maps),
            camera=torch.from_numpy(cond.shot_camera(shot, num_frames=self.num_frames)),
        )


def collate(clips: list[TrainingClip]) -> TrainingClip:
    """Stack clips into a batch: each field gains a leading B axis."""
    return TrainingClip(*(torch.stack([getattr(c, name) for c in clips]) for name in ("pixel_values", "maps",
                                                                                         "camera")))


def render_clips(out_dir: Path, clips: int, *, size: tuple[int, int] = cond.NATIVE_SIZE,
                 frames: int = cond.NUM_FRAMES, seed: int = 0, meshes: Path | None = None, first: int = 0,
                 python: str = sys.executable) -> list[Path]:
    """Render ``clips`` clips ``first ..`` into ``out_dir/clip_<index>/`` (module layout) with headless Blender.

    The bpy module runs in a subprocess (``python`` must have it; :mod:`.blender_data` describes the scenes); clip
    ``i`` depends only on ``(seed, i)``, so runs with different ``first`` can fill one folder in parallel.
    size: (W, H) pixels. Raises RuntimeError with Blender's output when rendering fails.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".render-") as tmp:
        cmd = [python, str(BLENDER_SCRIPT), "--out", tmp, "--first", str(first), "--count", str(clips),
               "--width", str(size[0]), "--height", str(size[1]), "--frames", str(frames), "--seed", str(seed)]
        if meshes is not None:
            cmd += ["--meshes", str(meshes)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        written = []
        for bundle in sorted(Path(tmp).glob("clip_*.zip")):
            shot = load_shot(bundle)
            written.append(write_clip(out_dir / bundle.stem, shot, shot.rgb_frames))
    return written
