"""How a benchmark hands over its result: the markdown table on stdout and, with ``--out``, the table there and
the raw numbers in a ``.json`` next to it (what the README's figures are copied from)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(out: Path | None, text: str, data: Any) -> None:
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        out.with_suffix(".json").write_text(json.dumps(data, indent=1), encoding="utf-8")
