"""Bad input gets a clear message and leaves no file; the operator, the CLI command and the runner script (real bpy)."""

import subprocess
import sys
from pathlib import Path

import pytest
from support.scenes import add_mesh, build_standard_shot

ROOT = Path(__file__).resolve().parents[2]


def _fails(scene, tmp_path, *words, **options):
    from addon.export import ExportError, ExportOptions, export_shot

    target = tmp_path / "shot.zip"
    with pytest.raises(ExportError) as info:
        export_shot(target, scene, ExportOptions(include_renders=False, **options))
    message = str(info.value)
    for word in words:
        assert word in message, message
    assert list(tmp_path.iterdir()) == []
    return message


@pytest.fixture
def small_shot(empty_scene):
    return build_standard_shot(64, 48, 5)


def test_no_camera(small_shot, tmp_path):
    small_shot.camera = None
    _fails(small_shot, tmp_path, "no camera", "Scene Properties › Camera")


def test_camera_not_perspective(small_shot, tmp_path):
    small_shot.camera.data.type = "ORTHO"
    _fails(small_shot, tmp_path, "'Camera'", "orthographic", "Perspective")
    small_shot.camera.data.type = "PANO"
    _fails(small_shot, tmp_path, "panoramic")


def test_unknown_export_camera(small_shot, tmp_path):
    _fails(small_shot, tmp_path, "'Nope'", camera="Nope")


def test_no_entities(empty_scene, tmp_path):
    import bpy

    scene = build_standard_shot(64, 48, 5)
    bpy.data.collections.remove(bpy.data.collections["TrajPlate"])
    add_mesh("cube", scene.collection, "Static", size=1.0)
    _fails(scene, tmp_path, "no entities", "'TrajPlate'", "trajplate_entity")


def test_zero_area_resolution(small_shot, tmp_path):
    small_shot.render.resolution_x, small_shot.render.resolution_percentage = 40, 1
    _fails(small_shot, tmp_path, "0x0", "Resolution")


def test_single_frame_and_too_many_frames(small_shot, tmp_path):
    _fails(small_shot, tmp_path, "1 frame", "at least 2", frame_range=(3, 3, 1))
    _fails(small_shot, tmp_path, "1000 frames", "at most 999", frame_range=(1, 1000, 1))


def test_more_entities_than_mask_ids(small_shot, tmp_path):
    """instance_mask is uint8: with renders, 255 entities at most (checked before anything renders)."""
    import bpy

    from addon.export import ExportError, ExportOptions, export_shot

    coll = bpy.data.collections["TrajPlate"]
    for i in range(256 - len(coll.objects)):
        coll.objects.link(bpy.data.objects.new(f"Extra{i:03d}", None))
    with pytest.raises(ExportError, match="256 entities.*at most 255.*without renders"):
        export_shot(tmp_path / "shot.zip", small_shot, ExportOptions(include_renders=True))
    assert list(tmp_path.iterdir()) == []


def test_bad_entity_axis(small_shot, tmp_path):
    small_shot.objects["Cube"]["trajplate_forward_axis"] = "W"
    _fails(small_shot, tmp_path, "'Cube'", "trajplate_forward_axis", "-Y")


def test_missing_linked_library(empty_scene, tmp_path):
    import bpy

    lib_path = tmp_path / "lib.blend"
    add_mesh("cube", empty_scene.collection, "LibCube", size=1.0)
    bpy.ops.wm.save_as_mainfile(filepath=str(lib_path))
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = build_standard_shot(64, 48, 5)
    with bpy.data.libraries.load(str(lib_path), link=True) as (_src, dst):
        dst.objects = ["LibCube"]
    scene.collection.objects.link(dst.objects[0])
    main = tmp_path / "main.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(main))
    lib_path.unlink()
    bpy.ops.wm.open_mainfile(filepath=str(main))
    out = tmp_path / "out"
    out.mkdir()
    _fails(bpy.context.scene, out, "lib.blend", "LibCube", "Relocate")


def test_warnings_unsaved_nonuniform_scale_never_in_view(small_shot, tmp_path):
    import bpy

    from addon.export import ExportOptions, export_shot

    small_shot.objects["Cone"].scale = (1.0, 2.0, 1.0)
    add_mesh("cube", bpy.data.collections["TrajPlate"], "Hidden", size=0.5, location=(0.0, -30.0, 3.0))  # behind the camera
    result = export_shot(tmp_path / "shot.zip", small_shot, ExportOptions(include_renders=False))
    text = "\n".join(result.warnings)
    assert "not saved" in text and "'Cone' has non-uniform scale" in text and "'Hidden' never enters" in text
    assert result.path.exists() and result.entity_names == ["Cone", "Cube", "Hidden", "Sphere"]


def test_auto_entities_without_collection(empty_scene, tmp_path):
    import bpy

    from addon.export import ExportOptions, build_shot

    scene = build_standard_shot(64, 48, 5)
    coll = bpy.data.collections["TrajPlate"]
    for obj in list(coll.objects):
        scene.collection.objects.link(obj)
    bpy.data.collections.remove(coll)
    scene.objects["Ground"]["trajplate_entity"] = True  # marked, though static
    scene.objects["Sphere"]["trajplate_entity"] = False  # excluded, though moving
    meta, _, _, _ = build_shot(scene, ExportOptions(include_renders=False))
    assert [e["name"] for e in meta["entities"]] == ["Cone", "Cube", "Ground"]
    cube = meta["entities"][1]
    assert (cube["forward_axis"], cube["up_axis"], cube["kind"]) == ("-Y", "Z", "MESH")
    assert cube["prompt"] == "a red wooden toy block" and len(cube["color"]) == 3


def test_operator_and_cli_command(small_shot, tmp_path):
    import bpy
    from trajplate.shot import load_shot

    from addon.export.cli import cli_handler

    target = tmp_path / "op.zip"
    assert bpy.ops.trajplate.export_shot(filepath=str(target), include_renders=False, use_scene_range=False,
                                         frame_start=2, frame_end=4) == {"FINISHED"}
    assert load_shot(target).frame_numbers.tolist() == [2, 3, 4]
    small_shot.camera = None
    with pytest.raises(RuntimeError, match="no camera"):  # self.report({'ERROR'}) raises in background mode
        bpy.ops.trajplate.export_shot(filepath=str(tmp_path / "bad.zip"), include_renders=False)
    assert not (tmp_path / "bad.zip").exists()
    small_shot.camera = small_shot.objects["Camera"]
    cli_out = tmp_path / "cli.zip"
    assert cli_handler(["export", "-o", str(cli_out), "--no-renders", "--frames", "1:5:2"]) == 0
    assert load_shot(cli_out).frame_numbers.tolist() == [1, 3, 5]
    assert cli_handler(["export", "-o", str(cli_out), "--frames", "x"]) == 2


def test_runner_script(small_shot, tmp_path):
    import bpy

    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    out = tmp_path / "runner.zip"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "export_shot.py"), str(blend), "-o", str(out),
                           "--no-renders", "--frames", "1:3"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from trajplate.shot import load_shot

    shot = load_shot(out)
    assert shot.meta.blend_file == str(blend) and shot.num_frames == 3


def test_entity_mesh_without_vertices(small_shot, tmp_path):
    """A proxy whose mesh was emptied (all geometry deleted) exports with no 2D box and a warning, not a crash."""
    import bpy
    from trajplate.shot import load_shot

    from addon.export import ExportOptions, export_shot

    empty = bpy.data.objects.new("Emptied", bpy.data.meshes.new("Emptied"))
    bpy.data.collections["TrajPlate"].objects.link(empty)
    result = export_shot(tmp_path / "shot.zip", small_shot, ExportOptions(include_renders=False))
    shot = load_shot(result.path)
    k = result.entity_names.index("Emptied")
    assert not shot.box_2d_valid[:, k].any() and (shot.box_2d[:, k] == 0).all()
    assert (shot.box_3d_world[:, k] == 0).all()  # an empty mesh's bound box is its origin: (0, 0, 0) at the origin
    assert shot.box_2d_valid[:, [j for j in range(len(result.entity_names)) if j != k]].all()
    assert any("'Emptied'" in w for w in result.warnings)
