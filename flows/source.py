"""Stage 0, source: write data/source.json, a stamp of the source named in params.yaml (data.source) that changes
exactly when its content does (stagediff.data.ingest.source_stamp: a file's sha256, a built-in's name and
published hash, a URL as written). dvc.yaml marks this stage ``always_changed``, so every ``dvc repro`` runs it
(no network; a few seconds, mostly importing the library), and ingest depends on the stamp: DVC re-runs ingest,
and whatever follows, only when the stamp's content changed.

Not a Prefect flow, and it does not import prefect (flows.common): it runs on every repro, and a flow without a
server would start a temporary one (11-21 s)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from flows import PARAMS, PROJECT
from flows.params import PipelineParams
from stagediff.data.ingest import source_stamp
from stagediff.errors import StageDiffError

SOURCE_STAMP = PROJECT / "data" / "source.json"


def write_stamp(params: Path = PARAMS, out: Path = SOURCE_STAMP) -> dict:
    stamp = source_stamp(PipelineParams.from_file(params).data.source)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")
    return stamp


if __name__ == "__main__":
    try:
        written = write_stamp()
    except StageDiffError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print(
        f"data/source.json: {written['kind']} {written['source']}"
        + (f", sha256 {written['sha256'][:12]}" if written.get("sha256") else "")
    )
