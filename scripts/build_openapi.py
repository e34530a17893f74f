"""Write app/web/openapi.json (what GET /openapi.json serves) from docs/openapi.yaml: `make openapi`.

`--check` exits 1 instead when the JSON is not what the YAML gives (the tests check it too).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "docs" / "openapi.yaml"
TARGET = ROOT / "app" / "web" / "openapi.json"


def render(document: Any) -> str:
    """The served JSON: compact, keys in the YAML's order, UTF-8."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n"


def main(argv: list[str]) -> int:
    text = render(yaml.safe_load(SOURCE.read_text(encoding="utf-8")))
    if "--check" in argv:
        if TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run `make openapi`", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
