"""Write the language-neutral contracts under `schemas/` from their Python sources.

popray schemas            # regenerate
popray schemas --check    # fail if a file is out of date (the tests run this)
"""

from __future__ import annotations

import json
from pathlib import Path

from popray.config import RunConfig
from popray.io.contract import INPUTS
from popray.io.tables import FIXED_SCHEMA, NAMES, SCHEMA_DIR, schema_as_json, table_schema

REPO_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def expected_files() -> dict[str, str]:
    """Relative path under schemas/ -> the text it must hold."""
    files: dict[str, str] = {}
    for name, model in INPUTS.items():
        schema = model.model_json_schema()
        schema["$id"] = f"popray/inputs/{name}.schema.json"
        files[f"inputs/{name}.schema.json"] = json.dumps(schema, indent=2) + "\n"
    config = RunConfig.model_json_schema()
    config["$id"] = "popray/config.schema.json"
    files["config.schema.json"] = json.dumps(config, indent=2) + "\n"
    for name in NAMES:
        if name in FIXED_SCHEMA:  # declared as data: published as it stands
            text = (SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8")
        else:
            text = json.dumps(schema_as_json(table_schema(name)), indent=2) + "\n"
        files[f"tables/{name}.json"] = text
    return files


def write_schemas(root: Path = REPO_SCHEMAS) -> list[Path]:
    written = []
    for rel, text in expected_files().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def stale_schemas(root: Path = REPO_SCHEMAS) -> list[str]:
    """Files under schemas/ that differ from what the code says (empty when in sync)."""
    return [
        rel
        for rel, text in expected_files().items()
        if not (root / rel).exists() or (root / rel).read_text(encoding="utf-8") != text
    ]
