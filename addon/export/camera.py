"""Camera intrinsics and extrinsics of a Blender camera, in TrajPlate's conventions.

K is in pixels at the output resolution (after resolution percentage) with the principal point in pixel-corner
coordinates: the top-left image corner is (0, 0), pixel centres sit at +0.5, so an unshifted camera has cx = W/2.
"""

import numpy as np

from .errors import ExportError

# Blender camera axes (x right, y up, looking down -z) to OpenCV camera axes (x right, y down, z forward):
# diag(1, -1, -1), applied as a factor on the rows of a 3x3 rotation.
_FLIP_YZ = np.array([[1.0], [-1.0], [-1.0]])


def render_size(render):
    """Output ``(W, H)`` in pixels of ``scene.render``: Blender truncates ``resolution * percentage // 100``."""
    pct = render.resolution_percentage
    return render.resolution_x * pct // 100, render.resolution_y * pct // 100


def intrinsics(lens, sensor_width, sensor_height, sensor_fit, shift_x, shift_y, width, height, pixel_aspect):
    """K of perspective cameras, as Blender's renderer sees them.

    lens, sensor sizes (mm) and shifts (fractions of the larger view dimension, Blender's unit): scalars or (F,)
    arrays; ``sensor_fit`` 'AUTO' | 'HORIZONTAL' | 'VERTICAL', a string or (F,) array of them; ``width``/``height``
    the output size in pixels; ``pixel_aspect`` (x, y). Returns (..., 3, 3) float64 in pixels with the principal
    point in pixel-corner coordinates. AUTO fits the wider side but always uses the sensor *width* (Blender's rule).
    """
    px, py = pixel_aspect
    par = py / px
    # One model, two evaluations: plain Python floats for a camera whose settings never change (the common case,
    # ~20x cheaper than a dozen NumPy calls) and arrays for animated ones; IEEE arithmetic gives the same numbers.
    settings = (lens, sensor_width, sensor_height, sensor_fit, shift_x, shift_y)
    scalar = not any(isinstance(v, np.ndarray) for v in settings)
    where = (lambda cond, a, b: a if cond else b) if scalar else np.where
    fit = sensor_fit if scalar else np.asarray(sensor_fit)
    horizontal = where(fit == "AUTO", width * px >= height * py, fit == "HORIZONTAL")
    sensor = where(fit == "VERTICAL", sensor_height, sensor_width)
    view_fac = where(horizontal, float(width), par * height)
    fx = (float(lens) if scalar else np.asarray(lens, dtype=np.float64)) / sensor * view_fac
    fy = fx / par
    cx = width / 2 - shift_x * view_fac
    cy = height / 2 + shift_y * view_fac / par
    if scalar:
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    K = np.zeros(fx.shape + (3, 3))
    K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2], K[..., 2, 2] = fx, fy, cx, cy, 1.0
    return K


def check_perspective(cam_obj):
    """Raise ExportError naming ``cam_obj`` unless it is a perspective camera object."""
    if cam_obj.type != "CAMERA":
        raise ExportError(f"Object '{cam_obj.name}' is a {cam_obj.type.lower()}, not a camera: pick a camera object.")
    if cam_obj.data.type != "PERSP":
        kind = {"ORTHO": "orthographic", "PANO": "panoramic"}.get(cam_obj.data.type, cam_obj.data.type)
        raise ExportError(
            f"Camera '{cam_obj.name}' is {kind}; TrajPlate needs a perspective camera: "
            "set Camera Properties › Lens › Type to Perspective."
        )


def _cross_gather():
    """Index arrays that gather, from (3 columns, 3 components, M) arrays, the five (3, 3, M) arrays a
    polar step needs at once: with a = column i+1, b = column i+2 and c = column i (indices mod 3), entry (i, k) of
    a[k+1], b[k+2], a[k+2], b[k+1] and c[k+1]. Then cofactor column i = a × b = g0 g1 - g2 g3, and sum_k g4 g0 is the
    dot of columns i and i+1."""
    i, k = np.meshgrid(np.arange(3), np.arange(3), indexing="ij")
    return np.array([i + 1, i + 2, i + 1, i + 2, i]) % 3, np.array([k + 1, k + 2, k + 2, k + 1, k + 1]) % 3


_COLUMN, _COMPONENT = _cross_gather()


def rigid(matrices, return_scale=False):
    """Nearest rotation + translation of affine matrices: (..., 4, 4) float64 in, same shape out, scale/shear removed.

    The rotation is the orthogonal polar factor, so non-uniform scale on rotated parents still gives a rotation.
    Matrices whose columns are orthogonal (scale without shear: nearly every object) take a fast path with the same
    result: columns normalised, then one Newton step of the polar iteration ``(R + R^-T) / 2`` removes the float32
    rounding of Blender's matrices (orthonormal to ~1e-15). Sheared or mirrored ones go through the SVD.
    With ``return_scale``, also returns the (..., 3) float64 lengths of the three axes (the columns of the 3x3 part).

    The fast path works on (column, component, matrix) arrays: every step is then one NumPy call over all matrices
    (reductions over a trailing 3-axis and batched 3x3 products cost 20-30x more per call on shot-sized inputs), and
    it calls ufuncs directly: right after ``frame_set`` each NumPy call costs 3-5x its warm time, and the Python-level
    wrappers (``ndarray.sum``, ``np.ones``, ...) twice that of a bare ufunc.
    """
    lead = matrices.shape[:-2]
    cols = matrices.reshape(-1, 4, 4)[:, :3, :3].transpose(2, 1, 0).copy()  # (3 columns, 3 components, M)
    scale = np.sqrt(np.add.reduce(cols * cols, axis=1))  # (3, M)
    cols /= scale[:, None]
    g = cols[_COLUMN, _COMPONENT]  # (5, 3, 3, M)
    cof = g[0] * g[1]  # cofactor column i = column i+1 × column i+2: det(R) · R^-T, all three crosses at once
    cof -= g[2] * g[3]
    det = np.add.reduce(cols[0] * cof[0], axis=0)
    cof /= det
    cof += cols
    cof *= 0.5  # one Newton step
    out = np.zeros(matrices.shape)
    flat = out.reshape(-1, 4, 4)
    flat[:, :3, :3] = cof.transpose(2, 1, 0)
    flat[:, :3, 3] = matrices.reshape(-1, 4, 4)[:, :3, 3]
    flat[:, 3, 3] = 1.0
    # Newton from normalised columns converges to the polar factor only when the columns were orthogonal (and the
    # matrix not mirrored); checked over all matrices at once first, as nearly always they all are.
    dots = np.abs(np.add.reduce(g[4] * g[0], axis=1))  # (3, M): |column i . column i+1|
    if np.maximum.reduce(dots, axis=None) > 1e-5 or np.minimum.reduce(det) < 0.5:
        slow = (np.maximum.reduce(dots, axis=0) > 1e-5) | (det < 0.5)
        rot = matrices.reshape(-1, 4, 4)[slow, :3, :3]
        u, _, vt = np.linalg.svd(rot)
        # A mirrored object (negative scale) gives det -1; flip one axis to stay a proper rotation.
        u[np.linalg.det(u @ vt) < 0, :, 2] *= -1
        flat[slow, :3, :3] = u @ vt
    if return_scale:
        return out, scale.T.reshape(*lead, 3)
    return out


def w2c_opencv(c2w_blender):
    """World-to-camera in OpenCV axes from camera-to-world in Blender axes: (..., 4, 4) float64 -> (..., 4, 4).

    ``w2c_cv = diag(1, -1, -1, 1) · inv(c2w_bl)``; ``c2w_bl`` must be rigid (see :func:`rigid`).
    """
    w2c = np.zeros(c2w_blender.shape)
    rot = w2c[..., :3, :3]
    np.multiply(c2w_blender[..., :3, :3].swapaxes(-1, -2), _FLIP_YZ, out=rot)  # diag(1, -1, -1) R^T
    np.matmul(rot, c2w_blender[..., :3, 3:], out=w2c[..., :3, 3:])
    w2c[..., :3, 3] *= -1.0
    w2c[..., 3, 3] = 1.0
    return w2c


def camera_arrays(c2w_rigid, samples, render, unit_scale):
    """``(c2w, w2c, K)`` of a sampled camera: the one place the export turns camera samples into bundle arrays.

    ``c2w_rigid``: (F, 4, 4) float64 camera-to-world, Blender axes and units, already through :func:`rigid`;
    ``samples``: :class:`.sampling.Samples` of that camera over F frames (lens, sensor, shift); ``render``: the scene's
    render settings (output size, pixel aspect); ``unit_scale``: metres per Blender unit. Returns ``c2w`` (F, 4, 4)
    float64 camera-to-world in Blender camera axes and ``w2c`` (F, 4, 4) float64 world-to-camera in OpenCV axes, both
    rigid and in metres, and ``K`` (F, 3, 3) float64 in pixels at the output resolution (pixel-corner origin).
    """
    width, height = render_size(render)
    settings = samples.fixed_camera  # one camera, fixed settings: the same K at every frame, from plain floats
    if settings is None:
        settings = (samples.lens, samples.sensor_width, samples.sensor_height, samples.sensor_fit, samples.shift_x,
                    samples.shift_y)
    K = intrinsics(*settings, width, height, (render.pixel_aspect_x, render.pixel_aspect_y))
    if K.ndim == 2:
        K = K[None].repeat(len(c2w_rigid), axis=0)
    c2w = c2w_rigid.copy()
    if unit_scale != 1.0:
        c2w[..., :3, 3] *= unit_scale
    return c2w, w2c_opencv(c2w), K
