"""Camera intrinsics and extrinsics of a Blender camera, in TrajPlate's conventions.

K is in pixels at the output resolution (after resolution percentage) with the principal point in pixel-corner
coordinates: the top-left image corner is (0, 0), pixel centres sit at +0.5, so an unshifted camera has cx = W/2.
"""

import numpy as np

from .errors import ExportError

# Blender camera axes (x right, y up, looking down -z) to OpenCV camera axes (x right, y down, z forward).
BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


def render_size(render):
    """Output ``(W, H)`` in pixels of ``scene.render``: Blender truncates ``resolution * percentage // 100``."""
    pct = render.resolution_percentage
    return render.resolution_x * pct // 100, render.resolution_y * pct // 100


def intrinsics(lens, sensor_width, sensor_height, sensor_fit, shift_x, shift_y, width, height, pixel_aspect):
    """K of a perspective camera, as Blender's renderer sees it.

    lens and sensor sizes in mm; ``sensor_fit`` 'AUTO' | 'HORIZONTAL' | 'VERTICAL'; shifts as fractions of the larger
    view dimension (Blender's units); ``width``/``height`` the output size in pixels; ``pixel_aspect`` (x, y).
    Returns (3, 3) float64, pixels, principal point in pixel-corner coordinates.
    AUTO fits the wider side but always uses the sensor *width* (Blender's rule).
    """
    px, py = pixel_aspect
    par = py / px
    if sensor_fit == "AUTO":
        horizontal, sensor = width * px >= height * py, sensor_width
    elif sensor_fit == "HORIZONTAL":
        horizontal, sensor = True, sensor_width
    else:
        horizontal, sensor = False, sensor_height
    view_fac = width if horizontal else par * height
    fx = lens / sensor * view_fac
    return np.array([
        [fx, 0.0, width / 2 - shift_x * view_fac],
        [0.0, fx / par, height / 2 + shift_y * view_fac / par],
        [0.0, 0.0, 1.0],
    ])


def camera_intrinsics(cam_obj, render):
    """K (3, 3) float64 of camera object ``cam_obj`` at the current frame, for ``scene.render``'s output size.

    Raises ExportError naming the camera when it is not a perspective camera.
    """
    cam = cam_obj.data
    if cam.type != "PERSP":
        raise ExportError(
            f"Camera '{cam_obj.name}' is {cam.type.lower()}; TrajPlate needs a perspective camera: "
            "set Camera Properties › Lens › Type to Perspective."
        )
    width, height = render_size(render)
    return intrinsics(
        cam.lens, cam.sensor_width, cam.sensor_height, cam.sensor_fit, cam.shift_x, cam.shift_y,
        width, height, (render.pixel_aspect_x, render.pixel_aspect_y),
    )


def rigid(matrices):
    """Nearest rotation + translation of affine matrices: (..., 4, 4) float64 in, same shape out, scale/shear removed.

    The rotation is the orthogonal polar factor (SVD), so non-uniform scale on rotated parents still gives a rotation.
    """
    u, _, vt = np.linalg.svd(matrices[..., :3, :3])
    rot = u @ vt
    # A mirrored object (negative scale) gives det -1; flip one axis to stay a proper rotation.
    flip = np.linalg.det(rot) < 0
    u[flip, :, 2] *= -1
    rot = u @ vt
    out = np.zeros(matrices.shape)
    out[..., :3, :3] = rot
    out[..., :3, 3] = matrices[..., :3, 3]
    out[..., 3, 3] = 1.0
    return out


def w2c_opencv(c2w_blender):
    """World-to-camera in OpenCV axes from camera-to-world in Blender axes: (..., 4, 4) float64 -> (..., 4, 4).

    ``w2c_cv = diag(1, -1, -1, 1) · inv(c2w_bl)``; ``c2w_bl`` must be rigid (see :func:`rigid`).
    """
    rot = c2w_blender[..., :3, :3]
    inv = np.zeros(c2w_blender.shape)
    inv[..., :3, :3] = np.swapaxes(rot, -1, -2)
    inv[..., :3, 3] = -np.einsum("...ji,...j->...i", rot, c2w_blender[..., :3, 3])
    inv[..., 3, 3] = 1.0
    return BLENDER_TO_OPENCV @ inv


def camera_settings(cam_obj, unit_scale):
    """The ``camera_settings`` dict of shot.json for ``cam_obj`` at the current frame: lens and sensor in mm, clip
    distances in metres (Blender units × ``unit_scale``)."""
    cam = cam_obj.data
    return {
        "type": cam.type,
        "lens_mm": cam.lens,
        "sensor_width_mm": cam.sensor_width,
        "sensor_height_mm": cam.sensor_height,
        "sensor_fit": cam.sensor_fit,
        "shift_x": cam.shift_x,
        "shift_y": cam.shift_y,
        "clip_start": cam.clip_start * unit_scale,
        "clip_end": cam.clip_end * unit_scale,
    }
