"""Start and stop ``trajplate serve`` on loopback from a Python environment the artist points at.

The backend runs in its own process with its own Python (torch, diffusers...): the add-on never pip-installs
into Blender's Python. Its output goes to a log file the panel tails. No ``bpy`` here.
"""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from pathlib import Path

HOST = "127.0.0.1"


class LocalBackend:
    """At most one backend process per Blender session."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def url(self, port: int) -> str:
        return f"http://{HOST}:{port}"

    def start(self, python: str, port: int, extra_args: str = "") -> Path:
        """Run ``<python> -m trajplate.cli serve --host 127.0.0.1 --port <port> <extra_args>``; returns the log path.

        Raises ``ValueError`` naming the preference to fix when ``python`` is not an executable file.
        """
        if self.running:
            return self.log_path
        exe = Path(python).expanduser()
        if not python or not exe.is_file():
            raise ValueError("set 'Backend Python' in TrajPlate's preferences to the python of an environment "
                             "with TrajPlate's backend installed (pip install -e . in the repository)")
        self.log_path = Path(tempfile.gettempdir()) / f"trajplate-serve-{port}.log"
        cmd = [str(exe), "-m", "trajplate.cli", "serve", "--host", HOST, "--port", str(port), *shlex.split(extra_args)]
        with open(self.log_path, "wb") as log:
            log.write(("$ " + shlex.join(cmd) + "\n").encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self.log_path

    def stop(self, wait_s: float = 5.0) -> None:
        """Terminate the process (then kill it if it does not exit within ``wait_s``)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def why_stopped(self, proc: subprocess.Popen) -> str | None:
        """None while ``proc`` (what :meth:`start` launched) runs; else one line for the panel: stopped from here, or
        exited on its own, with its exit code and the last line of its log (``trajplate serve`` prints why there)."""
        if proc is not self.proc:
            return "Local backend stopped"
        code = proc.poll()
        if code is None:
            return None
        last = next((line.strip() for line in reversed(self.tail(20).splitlines()) if line.strip()), "")
        return f"Local backend exited (code {code}): {last[:200]} (full log: Local Backend ▸ Log)"

    def tail(self, lines: int = 200) -> str:
        """The last ``lines`` lines of the log ('' before the first start)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])
