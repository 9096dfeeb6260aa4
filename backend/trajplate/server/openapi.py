"""Print the OpenAPI document of the job API: ``python -m trajplate.server.openapi > docs/openapi.json``."""

import json
import tempfile
from pathlib import Path

from .app import create_app
from .config import ServerConfig

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(create_app(ServerConfig(data_dir=Path(tmp), token=None)).openapi(), indent=2))
