"""Shot -> TrajectoryCrafter's native inputs: point-cloud renders into the redirect camera, hole masks, reference clip.

TrajectoryCrafter (specs/pipelines.md §4.3) lifts every source frame to a point cloud with its depth, re-projects it
into the target camera of that frame, and lets the inpainting DiT fill the holes. The authors estimate depth with
DepthCrafter and guess the cameras (f = 500 px, an orbit parametrised by θ/φ/r around the centre pixel). TrajPlate
knows both exactly:

* **source cameras** = the shot camera (``camera_w2c_opencv``, ``intrinsics``);
* **source depth** = the export's planar depth (metres, ``inf`` background) when the source is the shot's own render;
  for a generated take, an estimate aligned to the exact depth of frame 0 (:func:`align_inverse_depth`);
* **target cameras** = the redirect camera (OpenCV w2c per frame + K), or the authors' θ/φ/r/x/y orbit for parity
  with their CLI (:func:`orbit_offset`), applied relative to each source frame's camera as the authors do.

Splatting (:func:`splat`): each source pixel centre (``+0.5``, DESIGN) is unprojected with its planar depth,
moved by ``w2c_target · inv(w2c_source)``, projected with the target K, shifted by ``-0.5`` to integer pixel centres
and splatted bilinearly onto its 4 neighbours. Unlike the authors' soft depth weighting (``exp(50·log(1+d)/max)``), a
hard z-buffer decides visibility: a contribution survives only within ``z_tolerance`` (relative) of the nearest depth
that reached that pixel, so occluded points lose. Background pixels (``inf`` depth) are splatted as points at
infinity (direction only: rotation and K move them, translation does not) and lose to every finite point. A target
pixel with no surviving contribution is a hole (the authors' rule: weight > 0 is valid). The render goes straight to
the native 672×384 by scaling the target K (the authors warp at 1024×576 and then resize, which is the same
anisotropic stretch up to resampling). A source denser than the output is first thinned to one point per output
pixel (:func:`match_density`: the authors' 1:1 density, at 43 % of the cost for a 1024×576 source). Everything is
vectorised PyTorch and runs on the device of its inputs.

Time map (``sample``): diffusion frame ``j`` of ``T`` shows source frame ``floor(j·(S−1)/(T−1) + 0.5)`` of the ``S``
source frames (the nearest to an even spread; nothing is interpolated). Modes as the authors define them:

* ``gradual``: diffusion frame ``j`` = source frame ``s_j`` rendered into target camera ``j``; all 49 are output.
* ``direct``: the first :data:`DIRECT_CUT` (20) diffusion frames move the camera from the source camera to the first
  target with the scene frozen at the first source frame; frames 20..48 show source frames ``s_0..s_28`` in their
  target cameras; only those 29 are output. The 29 tail frames span the whole shot (``S → 29``) where the authors
  take the first 29 frames of their 49-frame clip.

The reference clip is the first :data:`REFERENCE_FRAMES` (10) of the sampled source frames (of the tail in
``direct`` mode), resized bilinearly (``align_corners=False``) to the native size as the authors do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..pipelines.base import PipelineInputError

if TYPE_CHECKING:
    from ..shot import Shot

Mode = Literal["gradual", "direct"]
MODES: tuple[str, ...] = ("gradual", "direct")
REFERENCE_FRAMES = 10
DIRECT_CUT = 20
Z_TOLERANCE = 0.02  # relative depth slack of the z-test: neighbouring points of one surface must not occlude each other
HOLE_DILATION = 5  # the authors' hole-mask dilation with --mask (5×5)
MIN_SPLAT_WEIGHT = 1e-3  # bilinear weights below this are float noise of an integer landing, not coverage


def time_map(num_source_frames: int, num_frames: int) -> np.ndarray:
    """(num_frames,) int64 indices into the source frames, one per diffusion frame (see module doc)."""
    if num_source_frames < 1:
        raise PipelineInputError("frames: the source has no frames; export at least one frame")
    if num_frames == 1:
        return np.zeros(1, dtype=np.int64)
    j = np.arange(num_frames, dtype=np.float64)
    return np.floor(j * (num_source_frames - 1) / (num_frames - 1) + 0.5).astype(np.int64)


def scale_intrinsics(K: np.ndarray, src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """K (..., 3, 3) in pixels at ``src_size`` (W, H) -> the same camera at ``dst_size`` (W, H), pixel-corner origin.

    A plain resize (the authors' aspect policy): x scales by W'/W, y by H'/H; principal points scale likewise because
    the origin is the image corner (DESIGN).
    """
    sx, sy = dst_size[0] / src_size[0], dst_size[1] / src_size[1]
    return np.diag([sx, sy, 1.0]) @ np.asarray(K, dtype=np.float64)


def splat(
    frames: torch.Tensor,
    depth: torch.Tensor,
    src_w2c: torch.Tensor,
    src_K: torch.Tensor,
    dst_w2c: torch.Tensor,
    dst_K: torch.Tensor,
    out_size: tuple[int, int],
    *,
    z_tolerance: float = Z_TOLERANCE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render point clouds of source frames into target cameras with a z-buffered bilinear splat.

    frames: (B, 3, H, W) RGB, float in [0, 1] or uint8. depth: (B, H, W) planar camera z in metres, ``inf`` = background at
    infinity (NaN and z <= 0 are dropped). src_w2c / dst_w2c: (B, 4, 4) world-to-camera, OpenCV axes, metres.
    src_K: (B, 3, 3) pixels at W×H; dst_K: (B, 3, 3) pixels at ``out_size`` = (w, h); both with the pixel-corner
    origin (pixel centres at +0.5). Runs on the device of ``frames``; matrices are composed in float64.

    Returns ``(render, holes)``: render (B, 3, h, w) float32 in [0, 1], black at holes, in channels-last memory (its
    ``permute(0, 2, 3, 1)`` is contiguous); holes (B, h, w) bool, True where
    no point landed. Raises ValueError naming the argument whose shape is wrong.
    """
    b, c, h_src, w_src = frames.shape
    w_out, h_out = out_size
    if c != 3:
        raise ValueError(f"frames: expected (B, 3, H, W); got {tuple(frames.shape)}")
    for name, value, shape in (("depth", depth, (b, h_src, w_src)), ("src_w2c", src_w2c, (b, 4, 4)),
                               ("src_K", src_K, (b, 3, 3)), ("dst_w2c", dst_w2c, (b, 4, 4)),
                               ("dst_K", dst_K, (b, 3, 3))):
        if tuple(value.shape) != shape:
            raise ValueError(f"{name}: expected shape {shape}; got {tuple(value.shape)}")
    device = frames.device
    relative = dst_w2c.double() @ torch.linalg.inv(src_w2c.double())  # source camera -> target camera
    rays = torch.linalg.inv(src_K.double())  # pixel -> ray at z = 1
    rot = (dst_K.double() @ relative[:, :3, :3] @ rays).float()  # (B, 3, 3): pixel of a ray -> target pixel·z
    shift = (dst_K.double() @ relative[:, :3, 3:])[..., 0].float()  # (B, 3): translation in target pixel·z units
    xs = torch.arange(w_src, device=device, dtype=torch.float32) + 0.5  # source pixel centres (pixel-corner origin)
    ys = torch.arange(h_src, device=device, dtype=torch.float32)[:, None] + 0.5
    # Accumulators on the output grid padded by 2 pixels on every side: a point whose corner x0 is clamped to
    # [-2, w] has all 4 corners inside the padded grid, and those of a point that lands off the image fall in the
    # padding, which is dropped. Points with no projection go to a "dump" slot past the grid. So every point keeps its
    # place in every tensor: no bounds masks, no boolean compaction passes.
    pad = 2
    wp, hp = w_out + 2 * pad, h_out + 2 * pad
    dump = hp * wp
    corner_offset = torch.tensor([0, 1, wp, wp + 1], device=device)[:, None]  # top-left, top-right, bottom-l., bottom-r.
    nearest = torch.empty(dump + wp + 2, device=device)
    total = torch.empty(4, dump + wp + 2, device=device)
    corners = torch.empty(4, h_src * w_src, device=device)
    rgb1 = torch.ones(4, h_src * w_src, device=device)  # (1, r, g, b): weight and colour accumulate in one pass
    scale = 1.0 / 255.0 if frames.dtype == torch.uint8 else 1.0
    render = torch.empty(b, h_out, w_out, 3, device=device).permute(0, 3, 1, 2)  # channels-last memory
    holes = torch.empty(b, h_out, w_out, dtype=torch.bool, device=device)
    for i in range(b):  # one frame at a time bounds memory at 4·H·W contributions
        z = depth[i].reshape(-1).float()
        ahead = z > 0  # finite or +inf; NaN and z <= 0 are dropped
        finite = ahead & (z < torch.inf)
        # finite point: rot·pix·z + shift; point at infinity: direction rot·pix only (the shift is masked off)
        r, t, zf, keep_shift = rot[i], shift[i].tolist(), torch.where(finite, z, 1.0), finite.float()
        proj = [torch.addcmul(keep_shift * t[k], (r[k, 0] * xs + r[k, 1] * ys + r[k, 2]).view(-1), zf) for k in range(3)]
        valid = ahead & (proj[2] > 1e-9)
        z_safe = torch.where(valid, proj[2], 1.0)
        x = proj[0].div_(z_safe).sub_(0.5)  # DESIGN: pixel-corner coordinates -> integer pixel centres
        y = proj[1].div_(z_safe).sub_(0.5)
        x0, y0 = torch.floor(x), torch.floor(y)
        fx, fy = x.sub_(x0), y.sub_(y0)
        gx, gy = 1 - fx, 1 - fy
        base = torch.where(valid, y0.clamp_(-pad, h_out).mul_(wp).add_(x0.clamp_(-pad, w_out)), dump - pad * wp - pad)
        index = (base.long().add_(pad * wp + pad) + corner_offset).view(-1)  # (4·N,) padded flat index per corner
        for k, (a, c) in enumerate(((gx, gy), (fx, gy), (gx, fy), (fx, fy))):
            torch.mul(a, c, out=corners[k])
        # bilinear weights below MIN_SPLAT_WEIGHT are float noise of an integer landing: no coverage, no z-buffer entry
        weight = F.threshold(corners, MIN_SPLAT_WEIGHT, 0.0).view(-1)
        zc = torch.where(weight.view(4, -1) > 0, torch.where(finite, proj[2], torch.inf), torch.inf).view(-1)
        nearest.fill_(torch.inf).scatter_reduce_(0, index, zc, "amin").mul_(1 + z_tolerance)
        weight.masked_fill_(zc > nearest.take(index), 0.0)  # the z-test: occluded contributions get no weight
        torch.mul(frames[i].reshape(3, -1), scale, out=rgb1[1:])
        total.zero_()  # rows: Σw, Σw·r, Σw·g, Σw·b
        for k in range(4):  # a corner at a time: a (4, N) product stays in cache where (4, 4N) would not
            total.index_add_(1, index.view(4, -1)[k], rgb1 * weight.view(4, -1)[k])
        grid = total[:, :dump].view(4, hp, wp)[:, pad:-pad, pad:-pad]
        covered = grid[0] > 0
        render[i] = torch.where(covered, grid[1:] / grid[0].clamp_min(1e-12), 0.0)
        holes[i] = ~covered
    return render, holes


def match_density(
    rgb: np.ndarray, depth: np.ndarray, K: np.ndarray, out_size: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin a source denser than the output to one point per output pixel before :func:`splat`.

    The authors splat 1:1 (1024×576 onto 1024×576) and then resize to the native size; a point cloud as dense as the
    output is the same density, and splatting 2.3× more points into the same pixels mostly adds cost. Colour is
    area-averaged (``cv2.INTER_AREA``); depth is resampled with ``cv2.INTER_NEAREST_EXACT`` (a real depth sample, never
    an average across a silhouette, so no flying points); K is scaled per axis to the new grid (pixel-corner origin).
    A source no denser than the output is returned unchanged.

    rgb: (S, H, W, 3) uint8. depth: (S, H, W) float32 planar metres. K: (S, 3, 3) pixels at W×H. out_size: (w, h).
    Returns ``(rgb, depth, K)`` at ``out_size`` (or the inputs).
    """
    w_out, h_out = out_size
    h_src, w_src = depth.shape[-2:]
    if h_src * w_src <= w_out * h_out:
        return rgb, depth, K
    rgb = np.stack([cv2.resize(f, out_size, interpolation=cv2.INTER_AREA) for f in rgb])
    depth = np.stack([cv2.resize(d, out_size, interpolation=cv2.INTER_NEAREST_EXACT) for d in depth])
    return rgb, depth, scale_intrinsics(K, (w_src, h_src), out_size)


def render_point_clouds(
    rgb: np.ndarray,
    depth: np.ndarray,
    src_w2c: np.ndarray,
    src_K: np.ndarray,
    dst_w2c: np.ndarray,
    dst_K: np.ndarray,
    out_size: tuple[int, int],
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """The re-projection stage: :func:`match_density`, then :func:`splat` on ``device``, a chunk of frames at a time.

    rgb: (T, H, W, 3) uint8 source frames; depth (T, H, W) planar metres (``inf`` background); src_w2c / dst_w2c
    (T, 4, 4) OpenCV world-to-camera; src_K (T, 3, 3) pixels at W×H; dst_K (T, 3, 3) pixels at ``out_size`` (w, h).
    Returns ``(render, holes)``: (T, h, w, 3) float32 [0, 1], black at holes; (T, h, w) bool.
    """
    dev = torch.device(device)
    num, (w, h) = rgb.shape[0], out_size
    render = np.empty((num, h, w, 3), np.float32)
    holes = np.empty((num, h, w), bool)
    chunk = 8  # frames per splat call: bounds host->device copies without a per-frame Python round trip
    for start in range(0, num, chunk):
        sl = slice(start, min(start + chunk, num))
        frames, dep, K = match_density(rgb[sl], np.ascontiguousarray(depth[sl], np.float32), src_K[sl], out_size)
        out, hole = splat(
            torch.from_numpy(frames).to(dev).permute(0, 3, 1, 2), torch.from_numpy(dep).to(dev),
            *(torch.from_numpy(np.ascontiguousarray(m, np.float64)).to(dev) for m in (src_w2c[sl], K, dst_w2c[sl], dst_K[sl])),
            out_size,
        )
        render[sl] = out.permute(0, 2, 3, 1).cpu().numpy()
        holes[sl] = hole.cpu().numpy()
    return render, holes


def align_inverse_depth(estimate: np.ndarray, exact_depth0: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Metric depth from a relative inverse-depth estimate, aligned in scale and shift to the exact frame-0 depth.

    Monocular models such as Depth Anything V2 predict inverse depth up to an unknown affine map; a take starts from
    the rendered first frame, whose exact depth the export has. Least squares ``a·estimate₀ + b ≈ 1/z₀`` over the
    finite pixels of frame 0 fixes ``a, b``; the same map applies to every frame (the estimate's frames share one
    scale only as far as the model is temporally consistent).

    estimate: (F, H, W) float, relative inverse depth (larger = nearer). exact_depth0: (H, W) planar metres, ``inf``
    background. Returns ``(depth, a, b)``: depth (F, H, W) float32 planar metres, ``inf`` where ``a·e + b <= 0``.
    Raises PipelineInputError when frame 0 has fewer than 2 finite depth pixels or a constant estimate there.
    """
    estimate = np.asarray(estimate, dtype=np.float64)
    exact = np.asarray(exact_depth0, dtype=np.float64)
    if estimate.ndim != 3 or estimate.shape[1:] != exact.shape:
        raise PipelineInputError(
            f"depth estimate: shape {estimate.shape} does not match the exact depth {exact.shape} of frame 0")
    valid = np.isfinite(exact) & (exact > 0) & np.isfinite(estimate[0])
    e0 = estimate[0][valid]
    if e0.size < 2 or np.ptp(e0) == 0:
        raise PipelineInputError(
            "depth: frame 0 needs at least two pixels of finite exact depth and a non-constant estimate to align "
            "the take's depth; put geometry in front of the camera at the first frame")
    design = np.stack([e0, np.ones_like(e0)], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, 1.0 / exact[valid], rcond=None)
    inverse = a * estimate + b
    with np.errstate(divide="ignore"):
        depth = np.where(inverse > 1e-9, 1.0 / np.maximum(inverse, 1e-9), np.inf)
    return depth.astype(np.float32), float(a), float(b)


def _rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def orbit_offset(theta: float, phi: float, r: float, x: float, y: float, pivot_distance: float) -> np.ndarray:
    """The authors' θ/φ/r/x/y target as a (4, 4) relative w2c: source camera (OpenCV) -> target camera (OpenCV).

    The camera orbits the pivot on its optical axis at ``pivot_distance`` metres (the authors: the depth of the
    centre pixel of frame 0): ``theta`` degrees up, ``phi`` degrees right, keeping the pivot centred; then moves
    forward by ``r`` × pivot distance and pans ``x`` metres right and ``y`` metres up (the authors' x/y are in their
    relative depth units; TrajPlate's depth is metric). ``target_w2c = offset @ source_w2c``.
    """
    rot = _rotation("y", -phi) @ _rotation("x", -theta)  # OpenCV: +x right, +y down; -phi moves the centre right
    pivot = np.array([0.0, 0.0, pivot_distance])
    centre = pivot + rot @ (-pivot)
    centre = centre + r * pivot_distance * rot[:, 2] + x * rot[:, 0] - y * rot[:, 1]
    c2w = np.eye(4)
    c2w[:3, :3], c2w[:3, 3] = rot, centre
    return np.linalg.inv(c2w)


def interpolate_pose(w2c_a: np.ndarray, w2c_b: np.ndarray, alpha: float) -> np.ndarray:
    """(4, 4) w2c between ``w2c_a`` (alpha 0) and ``w2c_b`` (alpha 1): camera centre linear, rotation geodesic."""
    ca, cb = np.linalg.inv(w2c_a), np.linalg.inv(w2c_b)
    delta, _ = cv2.Rodrigues(cb[:3, :3] @ ca[:3, :3].T)
    step, _ = cv2.Rodrigues(delta * alpha)
    c2w = np.eye(4)
    c2w[:3, :3] = step @ ca[:3, :3]
    c2w[:3, 3] = (1 - alpha) * ca[:3, 3] + alpha * cb[:3, 3]
    return np.linalg.inv(c2w)


@dataclass
class Source:
    """The clip to re-shoot, in the shot camera.

    rgb: (S, H, W, 3) uint8. depth: (S, H, W) float32 planar metres, ``inf`` background. w2c: (S, 4, 4) OpenCV
    world-to-camera. K: (S, 3, 3) pixels at W×H. frame_numbers: (S,) float64 Blender frame of each source frame.
    """

    rgb: np.ndarray
    depth: np.ndarray
    w2c: np.ndarray
    K: np.ndarray
    frame_numbers: np.ndarray


@dataclass
class Target:
    """The redirect camera. Either ``w2c`` (L, 4, 4) OpenCV world-to-camera with L = 1 (static), the number of shot
    frames or the number of output frames, plus optional ``K`` (3, 3) or (L, 3, 3) pixels at the shot size (default:
    the shot camera's K); or ``pose`` = (θ°, φ°, r, x m, y m), the authors' orbit interpolated linearly from zero."""

    w2c: np.ndarray | None = None
    K: np.ndarray | None = None
    pose: Sequence[float] | None = None


@dataclass
class CrafterConditioning:
    """Native inputs. T = diffusion frames (49), h×w = native size (384×672).

    render: (T, h, w, 3) float32 [0, 1] point-cloud renders, black at holes. holes: (T, h, w) bool.
    reference: (10, h, w, 3) float32 [0, 1] source frames. source_index: (T,) int64 source frame each diffusion frame
    shows. target_w2c (T, 4, 4), target_K (T, 3, 3) at h×w. keep: first diffusion frame that is output (0 or 20).
    shot_frames: (T - keep,) float64 Blender frame each output frame stands for.
    """

    render: np.ndarray
    holes: np.ndarray
    reference: np.ndarray
    source_index: np.ndarray
    target_w2c: np.ndarray
    target_K: np.ndarray
    keep: int
    shot_frames: np.ndarray
    mode: str


def source_from_shot(shot: Shot) -> Source:
    """The shot's own render as the source: RGB frames and exact depth. Raises PipelineInputError if either is absent."""
    if shot.rgb_frames is None or shot.depth is None:
        missing = [n for n, v in (("RGB renders of every frame", shot.rgb_frames), ("depth", shot.depth)) if v is None]
        raise PipelineInputError(
            f"source: the bundle has no {' and no '.join(missing)}; TrajectoryCrafter re-shoots the shot's render. "
            "Fix: export with renders on (RGB frames and the depth pass), or pass options.source_video (a take)")
    return Source(rgb=shot.rgb_frames, depth=shot.depth, w2c=shot.camera_w2c_opencv, K=shot.intrinsics,
                  frame_numbers=shot.frame_numbers.astype(np.float64))


def _per_output(name: str, value: np.ndarray, shot_index: np.ndarray, num_shot: int, num_out: int) -> np.ndarray:
    """Matrices given once, per shot frame or per output frame -> one per output frame."""
    if value.shape[0] == 1:
        return np.repeat(value, num_out, axis=0)
    if value.shape[0] == num_out:
        return value
    if value.shape[0] == num_shot:
        return value[shot_index]
    raise PipelineInputError(
        f"options.{name}: {value.shape[0]} matrices given; give 1 (static), one per exported shot frame "
        f"({num_shot}) or one per output frame ({num_out})")


def _pivot_distance(depth0: np.ndarray) -> float:
    """Depth of the centre pixel of frame 0 (the authors' orbit radius); the median finite depth if that is sky."""
    h, w = depth0.shape
    centre = float(depth0[h // 2, w // 2])
    if np.isfinite(centre) and centre > 0:
        return centre
    finite = depth0[np.isfinite(depth0) & (depth0 > 0)]
    if finite.size == 0:
        raise PipelineInputError("target_pose: frame 0 has no finite depth to orbit around; use options.target_w2c")
    return float(np.median(finite))


def dilate_holes(render: np.ndarray, holes: np.ndarray, size: int = HOLE_DILATION) -> tuple[np.ndarray, np.ndarray]:
    """The authors' ``--mask`` ("clean points"): grow the hole mask by a ``size``×``size`` square and black the
    pixels it takes, so the splat's thin fringes at depth edges are inpainted rather than kept.

    render: (T, h, w, 3) float32; holes: (T, h, w) bool. Returns new ``(render, holes)``; the inputs are not changed.
    """
    kernel = np.ones((size, size), np.uint8)
    grown = np.stack([cv2.dilate(h.astype(np.uint8), kernel) for h in holes]).astype(bool)
    return np.where(grown[..., None], 0.0, render).astype(np.float32), grown


def build_conditioning(
    source: Source,
    target: Target,
    *,
    shot_frame_count: int,
    mode: Mode = "gradual",
    height: int = 384,
    width: int = 672,
    num_frames: int = 49,
    device: str | torch.device = "cpu",
    clean_holes: bool = False,
) -> CrafterConditioning:
    """Point-cloud renders, hole masks and the reference clip at ``width``×``height``, ``num_frames`` diffusion frames.

    ``shot_frame_count``: F, to tell per-shot-frame target matrices from per-output ones. ``source`` frames are
    sampled with :func:`time_map`; see the module doc for the modes. Splatting runs on ``device``. ``clean_holes``:
    :func:`dilate_holes` (the authors' ``--mask``).
    Raises PipelineInputError naming the option at fault.
    """
    if mode not in MODES:
        raise PipelineInputError(f"options.mode: {mode!r} is unknown; valid: {', '.join(MODES)}")
    lead = DIRECT_CUT if mode == "direct" else 0
    if num_frames <= lead:
        raise PipelineInputError(f"options.mode: direct needs more than {DIRECT_CUT} frames; the model makes {num_frames}")
    num_src, (src_h, src_w) = source.rgb.shape[0], source.rgb.shape[1:3]
    tail = time_map(num_src, num_frames - lead)  # source frame of each output frame
    shot_index = time_map(shot_frame_count, num_frames - lead) if num_src != shot_frame_count else tail
    out_w2c_src = source.w2c[tail]

    if target.pose is not None:
        if target.w2c is not None:
            raise PipelineInputError("options: give target_w2c or target_pose, not both")
        if len(target.pose) != 5:
            raise PipelineInputError(f"options.target_pose: 5 numbers θ φ r x y expected; got {len(target.pose)}")
        radius = _pivot_distance(source.depth[0])
        alphas = np.linspace(0.0, 1.0, DIRECT_CUT if lead else num_frames)
        offsets = [orbit_offset(*(a * np.asarray(target.pose, dtype=np.float64)), radius) for a in alphas]
        if lead:
            lead_w2c = [o @ source.w2c[tail[0]] for o in offsets]
            target_w2c = np.stack(lead_w2c + [offsets[-1] @ w for w in out_w2c_src])
        else:
            target_w2c = np.stack([o @ w for o, w in zip(offsets, out_w2c_src, strict=True)])
    elif target.w2c is not None:
        w2c = np.asarray(target.w2c, dtype=np.float64).reshape(-1, 4, 4)
        if not np.isfinite(w2c).all():
            raise PipelineInputError("options.target_w2c: contains NaN or inf")
        out = _per_output("target_w2c", w2c, shot_index, shot_frame_count, num_frames - lead)
        lead_w2c = [interpolate_pose(source.w2c[tail[0]], out[0], k / (lead - 1)) for k in range(lead)] if lead else []
        target_w2c = np.concatenate([np.asarray(lead_w2c).reshape(-1, 4, 4), out])
    else:
        raise PipelineInputError("options: the redirect camera is missing; give target_w2c (OpenCV w2c per frame, "
                                 "from the add-on's redirect camera) or target_pose [θ, φ, r, x, y]")

    if target.K is None:
        target_K = source.K[np.concatenate([np.full(lead, tail[0]), tail])]
    else:
        K = np.asarray(target.K, dtype=np.float64).reshape(-1, 3, 3)
        out_K = _per_output("target_K", K, shot_index, shot_frame_count, num_frames - lead)
        target_K = np.concatenate([np.repeat(out_K[:1], lead, axis=0), out_K])
    target_K = scale_intrinsics(target_K, (src_w, src_h), (width, height))

    source_index = np.concatenate([np.full(lead, tail[0]), tail]).astype(np.int64)
    render, holes = render_point_clouds(
        source.rgb[source_index], source.depth[source_index], source.w2c[source_index], source.K[source_index],
        target_w2c, target_K, (width, height), device)
    if clean_holes:
        render, holes = dilate_holes(render, holes)

    ref_idx = tail[:REFERENCE_FRAMES]
    ref = torch.from_numpy(source.rgb[ref_idx]).permute(0, 3, 1, 2).float() / 255.0
    reference = F.interpolate(ref, size=(height, width), mode="bilinear", align_corners=False)
    return CrafterConditioning(
        render=render, holes=holes, reference=reference.permute(0, 2, 3, 1).clamp(0, 1).numpy(),
        source_index=source_index, target_w2c=target_w2c, target_K=target_K, keep=lead,
        shot_frames=source.frame_numbers[tail].astype(np.float64), mode=mode,
    )


def preview(cond: CrafterConditioning) -> np.ndarray:
    """(T_out, h, w, 3) uint8: the point-cloud render of each output frame with its holes tinted magenta."""
    render = cond.render[cond.keep:]
    rgb = (np.clip(render, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    rgb[cond.holes[cond.keep:]] = (255, 0, 255)
    return rgb
