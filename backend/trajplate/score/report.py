"""The score's result: summary, normalisation against the calibration, JSON conversion and the printed table."""

from __future__ import annotations

import math

import numpy as np

from .metrics import normalise

# Summary metrics put on the oracle (1) … frozen take (0) scale when a calibration is given, each with the
# smallest oracle–frozen gap that tells a moving shot from a static one for that metric (else not normalised).
NORMALISED_KEYS = {"camera_rot_deg": 0.5, "camera_trans_m": 0.05, "camera_ate_m": 0.05, "entity_trans_m": 0.1,
                   "entity_rot_deg": 3.0, "objmc_px": 2.0, "box_iou": 0.1}

_LABELS = {
    "camera_rot_deg": "camera rotation error (°)",
    "camera_trans_m": "camera translation error (m)",
    "camera_ate_m": "camera ATE (m)",
    "entity_trans_m": "entity translation error (m)",
    "entity_rot_deg": "entity rotation error (°)",
    "objmc_px": "ObjMC (px)",
    "box_iou": "box IoU",
    "first_frame_psnr": "first-frame PSNR (dB)",
    "first_frame_ssim": "first-frame SSIM",
    "flicker": "flicker (warping error, 0-255)",
    "survival": "tracked points surviving",
}


def _mean(values: np.ndarray) -> float | None:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else None


def _pooled(entities: list[dict], key: str) -> float | None:
    """Mean of ``key`` over all scored entities and the frames where each is in view."""
    parts = [np.asarray(e[key])[np.asarray(e["in_view"])] for e in entities if key in e]
    return _mean(np.concatenate(parts)) if parts else None


def summarise(camera: dict | None, entities: list[dict], quality: dict, tracking: dict) -> dict:
    """The few numbers shown next to a take (means over the take; None where not measurable)."""
    survival = np.asarray(tracking["survival"])
    return {
        "camera_rot_deg": _mean(camera["rot_deg"]) if camera else None,
        "camera_trans_m": _mean(camera["trans_m"]) if camera else None,
        "camera_ate_m": camera["ate_m"] if camera and math.isfinite(camera["ate_m"]) else None,
        "entity_trans_m": _pooled(entities, "trans_m"),
        "entity_rot_deg": _pooled(entities, "rot_deg"),
        "objmc_px": _pooled(entities, "objmc_px"),
        "box_iou": _pooled(entities, "box_iou"),
        "first_frame_psnr": quality["first_frame_psnr"],
        "first_frame_ssim": quality["first_frame_ssim"],
        "flicker": _mean(quality["flicker"]),
        "survival": float(survival[-1]) if len(survival) else None,
    }


def jsonable(value):
    """Arrays → lists, NumPy scalars → Python, NaN/inf → None (JSON has neither)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def build_result(shot_frames, camera, entities, quality, tracking, warnings, calibration) -> dict:
    """Assemble ``score_take``'s JSON-able result (see ``docs/adherence.md`` for every field)."""
    summary = jsonable(summarise(camera, entities, quality, tracking))
    normalised = None
    if calibration and calibration.get("oracle") and calibration.get("frozen"):
        o, f = calibration["oracle"], calibration["frozen"]
        normalised = {k: normalise(summary[k], o.get(k), f.get(k), gap) for k, gap in NORMALISED_KEYS.items()}
    return jsonable({
        "version": 1,
        "summary": summary,
        "normalised": normalised,
        "calibration": calibration,
        "shot_frames": shot_frames,
        "camera": camera,
        "entities": entities,
        "quality": quality,
        "tracking": tracking,
        "warnings": warnings,
    })


def _fmt(v) -> str:
    if v is None:
        return "—"
    return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"


def format_table(result: dict) -> str:
    """A plain-text table of the summary (raw, oracle, frozen, normalised) followed by the warnings."""
    cal = result.get("calibration") or {}
    oracle, frozen = cal.get("oracle") or {}, cal.get("frozen") or {}
    norm = result.get("normalised") or {}
    rows = [("metric", "take", "oracle", "frozen", "normalised")]
    for key, label in _LABELS.items():
        rows.append((label, _fmt(result["summary"].get(key)), _fmt(oracle.get(key)), _fmt(frozen.get(key)),
                     _fmt(norm.get(key))))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines += [f"warning: {w}" for w in result["warnings"]]
    return "\n".join(lines)
