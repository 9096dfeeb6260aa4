"""MP4 writing and reading through PyAV: H.264 yuv420p, BT.709, short GOP, metadata, atomic replacement."""

import os
import subprocess
import sys

import av
import numpy as np
import pytest
from trajplate.video import read_mp4, write_mp4


def gradient_frames(t=17, h=48, w=64):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([np.stack([(x * 4 + k * 7) % 256, (y * 5) % 256, np.full_like(x, 40 + k * 9)], -1)
                     for k in range(t)]).astype(np.uint8)


def test_round_trip_format_and_metadata(tmp_path):
    frames = gradient_frames()
    path = write_mp4(tmp_path / "take.mp4", frames, 8.0, metadata={"job_id": "abc", "seed": 7})
    decoded = read_mp4(path)
    assert decoded.frames.shape == frames.shape and decoded.fps == 8.0
    assert np.abs(decoded.frames.astype(int) - frames.astype(int)).mean() < 3  # CRF 17 on smooth content
    assert decoded.metadata == {"job_id": "abc", "seed": "7"}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        assert (ctx.name, ctx.pix_fmt, ctx.profile) == ("h264", "yuv420p", "High")
        assert (int(ctx.color_primaries), int(ctx.colorspace), int(ctx.color_range)) == (1, 1, 1)  # BT.709, tv
        keyframes = [i for i, f in enumerate(container.decode(stream)) if f.key_frame]
        assert '"job_id": "abc"' in container.metadata["comment"]
    assert keyframes == [0, 8, 16]  # a keyframe every 8 frames: the sequencer scrubs smoothly


def test_odd_sizes_are_padded_and_bad_input_refused(tmp_path):
    decoded = read_mp4(write_mp4(tmp_path / "odd.mp4", gradient_frames(3, 15, 21), 7))
    assert decoded.frames.shape == (3, 16, 22, 3)
    assert np.abs(decoded.frames[:, -1].astype(int) - decoded.frames[:, -2].astype(int)).mean() < 4
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(tmp_path / "x.mp4", gradient_frames().astype(np.float32), 8)
    with pytest.raises(ValueError, match="fps"):
        write_mp4(tmp_path / "x.mp4", gradient_frames(), 0)
    assert not (tmp_path / "x.mp4").exists()


def test_full_disk_keeps_the_earlier_file(tmp_path):
    """A write that hits the file-size limit (EFBIG, as ENOSPC would) fails and leaves the earlier take intact."""
    earlier = write_mp4(tmp_path / "take.mp4", gradient_frames(2), 8).read_bytes()
    script = (
        "import resource, signal, sys, numpy as np\n"
        "from trajplate.video import write_mp4\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "rng = np.random.default_rng(0)\n"
        "try:\n"
        "    write_mp4(sys.argv[1], rng.integers(0, 255, (30, 64, 64, 3), dtype=np.uint8), 8)\n"
        "except OSError as exc:\n"
        "    print('OSError', exc.errno)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "take.mp4")], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip().startswith("OSError"), out.stdout + out.stderr
    assert (tmp_path / "take.mp4").read_bytes() == earlier
    assert os.listdir(tmp_path) == ["take.mp4"]  # no .part left behind
