"""Scene → shot bundle export (bpy reads only). Entry points: :func:`export_shot`, :func:`build_shot`."""

from .errors import ExportCancelled, ExportError
from .exporter import ExportOptions, ExportResult, build_shot, export_shot

__all__ = ["ExportCancelled", "ExportError", "ExportOptions", "ExportResult", "build_shot", "export_shot"]
