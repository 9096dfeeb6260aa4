"""``score_take``: how well a generated take follows its shot, measured against the shot's exact geometry.

Pipeline: seed points on the shot's first-frame render with exact 3D (depth + K + camera), track them from
the render into the take's first frame and on through the take, recover the take's camera (PnP on
background) and each entity's pose (PnP on its points), and compare with the shot sampled through the time
map. The render is frame 0 of the tracked sequence, so a take that does not start where the shot starts
is detected (its first step loses the points) rather than silently mis-seeded.
"""

from __future__ import annotations

import cv2
import numpy as np

from .camera import MIN_POINTS as CAMERA_MIN_POINTS
from .camera import camera_adherence
from .entities import MIN_POINTS as ENTITY_MIN_POINTS
from .entities import entity_adherence
from .geometry import opencv_K, transform
from .points import seed_points
from .quality import psnr, sharpness, ssim, warping_error
from .report import build_result
from .tracking import track_points
from .truth import ScoreInputError, sample_truth

# Fewer seeds than this fraction surviving render → take frame 0 means the take starts somewhere else.
FIRST_FRAME_MIN_SURVIVAL = 0.3


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ScoreInputError(f"frames: expected a (T, H, W, 3) RGB array with T ≥ 1, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ScoreInputError(f"frames: expected dtype uint8 (0–255 RGB), got {frames.dtype}; convert with .astype(np.uint8)")
    return frames


def _fit_to_shot(frames: np.ndarray, width: int, height: int, warnings: list[str]) -> np.ndarray:
    """Resize the take to the shot's resolution (the pipelines resize the shot to their native size)."""
    T, h, w, _ = frames.shape
    if (w, h) == (width, height):
        return frames
    if abs(w / h - width / height) > 0.01 * width / height:
        warnings.append(
            f"take is {w}×{h} but the shot is {width}×{height} (another aspect ratio): the take was stretched "
            "back to the shot's size; if the pipeline cropped instead, the scores are biased"
        )
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _entity_name(shot, k: int) -> str:
    ents = shot.meta.entities
    return ents[k].name if k < len(ents) else f"entity {k + 1}"


def score_take(frames: np.ndarray, shot, shot_frames: np.ndarray, *, calibration: dict | None = None) -> dict:
    """Score a take against its shot.

    frames: (T, H, W, 3) uint8 RGB, any size (resized to the shot's); shot: :class:`trajplate.shot.Shot` with
    depth (and instance masks for entity scores); shot_frames: (T,) float64 Blender frame of each take frame
    (the pipeline's time map, ``GeneratedVideo.shot_frames``); calibration: ``calibrate(shot, shot_frames)``'s
    result, to add scores normalised between the oracle (1) and the frozen take (0).

    Returns a JSON-able dict (see ``docs/adherence.md``): ``summary`` (the few numbers the add-on shows),
    ``normalised``, ``camera``, ``entities``, ``tracking``, ``quality``, per-frame lists (None where not
    measurable) and ``warnings`` explaining every missing score. Raises :class:`ScoreInputError` for frames that
    are not RGB uint8 video or a time map outside the shot; every other problem gives a partial score.
    """
    frames = _check_frames(frames)
    shot_frames = np.asarray(shot_frames, dtype=np.float64).ravel()
    warnings: list[str] = []
    if len(shot_frames) != len(frames):
        n = min(len(shot_frames), len(frames))
        warnings.append(
            f"take has {len(frames)} frames but the time map (shot_frames) has {len(shot_frames)}: scored the first "
            f"{n}; pass the time map of this take (GeneratedVideo.shot_frames or the job's metadata.json)"
        )
        frames, shot_frames = frames[:n], shot_frames[:n]
    frames = _fit_to_shot(frames, shot.width, shot.height, warnings)
    # Sequence frame 0 is the shot's first exported frame (the render); 1..T are the take's frames.
    seq_frames = np.concatenate([[float(shot.frame_numbers[0])], shot_frames])
    truth = sample_truth(shot, seq_frames)
    render = np.asarray(shot.first_frame)
    grays = [_gray(render)] + [_gray(f) for f in frames]
    K_cv = opencv_K(truth.K)
    ransac_px = 2.0 * max(shot.width, shot.height) / 720

    seeds = None
    if shot.depth is None:
        warnings.append("the bundle has no depth: camera and entity adherence need it (export with depth enabled)")
    else:
        if shot.instance_mask is None:
            warnings.append("the bundle has no instance masks: entity adherence needs them (export with masks enabled)")
            labels = np.zeros((shot.height, shot.width), np.uint8)
            entity_ids: list[int] = []
        else:
            labels = np.asarray(shot.instance_mask[0])
            entity_ids = [k + 1 for k in range(shot.num_entities)]
        seeds = seed_points(grays[0], np.asarray(shot.depth[0]), truth.K[0], labels, entity_ids)

    flicker = np.full(len(frames) - 1, np.nan)

    def on_flow(i: int, flow: np.ndarray) -> None:
        if i >= 1:  # steps between take frames (step 0 is render → take frame 0)
            flicker[i - 1] = warping_error(frames[i - 1], frames[i], flow)

    xy0 = seeds.xy if seeds is not None else np.zeros((0, 2), np.float32)
    tracks = track_points(grays, xy0, on_flow=on_flow)
    xy = tracks.xy.copy()  # the PnP stages below drop points that break the rigid motion
    alive = tracks.alive
    owner = seeds.owner if seeds is not None else np.zeros(0, np.int32)

    first_survival = float(alive[1].mean()) if alive.shape[1] else float("nan")
    start_ok = alive.shape[1] > 0 and first_survival >= FIRST_FRAME_MIN_SURVIVAL
    if alive.shape[1] and not start_ok:
        warnings.append(
            f"the take's first frame does not match the shot's first frame: only {first_survival:.0%} of the points "
            "seeded on the render were found in it, so camera and entity adherence are not scored (a text-to-video "
            "pipeline, or a take generated from another first frame); quality proxies are still reported"
        )
    if abs(shot_frames[0] - seq_frames[0]) > 0.5:
        warnings.append(
            f"the take starts at Blender frame {shot_frames[0]:g}, not at the shot's first frame {seq_frames[0]:g}: "
            "first-frame PSNR/SSIM compare it with the first frame's render anyway"
        )

    camera = None
    est_w2c = np.full((len(seq_frames), 4, 4), np.nan)
    if seeds is not None and start_ok:
        bg = owner == 0
        if bg.sum() < CAMERA_MIN_POINTS:
            warnings.append(
                f"only {int(bg.sum())} trackable background points on the render (need ≥ {CAMERA_MIN_POINTS}): "
                "the background is textureless or hidden, so camera adherence is not scored"
            )
        else:
            world = transform(truth.c2w[0], seeds.xyz_cam[bg])
            est_w2c, xy[:, bg], camera = camera_adherence(world, xy[:, bg], truth, K_cv, ransac_px=ransac_px)
            failed = np.flatnonzero(~np.isfinite(camera["rot_deg"]))
            if len(failed):
                warnings.append(
                    f"camera not recovered in {len(failed)} of {len(frames)} take frames (first: {int(failed[0])}): "
                    "too few background points survived tracking there"
                )

    entities = []
    for k in range(shot.num_entities):
        eid, name = k + 1, _entity_name(shot, k)
        mine = owner == eid
        entry = {"id": eid, "name": name, "points": int(mine.sum())}
        if seeds is not None and start_ok and shot.instance_mask is not None:
            if not truth.box_valid[0, k]:
                warnings.append(f"entity {eid} ({name}) is not in view in the shot's first frame: not scored")
            elif mine.sum() < ENTITY_MIN_POINTS:
                warnings.append(
                    f"entity {eid} ({name}): only {int(mine.sum())} trackable points on the render "
                    f"(need ≥ {ENTITY_MIN_POINTS}; too small or untextured): not scored"
                )
            else:
                xy[:, mine], report = entity_adherence(
                    k, seeds.xyz_cam[mine], xy[:, mine], truth, K_cv, est_w2c, ransac_px=ransac_px
                )
                entry.update(report)
                out = np.flatnonzero(~entry["in_view"])
                if len(out):
                    warnings.append(
                        f"entity {eid} ({name}) is out of view in {len(out)} take frames (first: {int(out[0])}): "
                        "scored on the frames where it is visible"
                    )
        entities.append(entry)

    quality = {
        "first_frame_psnr": psnr(frames[0], render),
        "first_frame_ssim": ssim(frames[0], render),
        "flicker": flicker,
        "sharpness": np.array([sharpness(g) for g in grays[1:]]),
    }
    tracking = {
        "seeded": {"background": int((owner == 0).sum()), "entities": int((owner > 0).sum())},
        "first_frame_survival": first_survival,
        "survival": np.isfinite(xy[1:, :, 0]).mean(axis=1) if xy.shape[1] else np.zeros(len(frames)),
        "dis_disagreement_px": tracks.dis_px,
    }
    return build_result(shot_frames, camera, entities, quality, tracking, warnings, calibration)
