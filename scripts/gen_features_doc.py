"""Write docs/features.md from rangebar_pipeline/features.toml (``--check``: fail if it differs)."""

from __future__ import annotations

import sys
from pathlib import Path

from rangebar_pipeline.manifest import render_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "features.md"


def main(argv: list[str]) -> int:
    text = render_markdown()
    if "--check" in argv:
        if not DOC.exists() or DOC.read_text("utf-8") != text:
            print(f"{DOC} is stale: run python scripts/gen_features_doc.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text, "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
