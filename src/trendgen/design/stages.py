"""The design stages, in the order they run: name -> the `STAGE` each declares beside its code."""

from __future__ import annotations

from trendgen.design import cluster, describe, embed, generate, prompt, report
from trendgen.design.store import RecordStage, Stage

STAGES: dict[str, Stage | RecordStage] = {
    "embed": embed.STAGE,
    "cluster": cluster.STAGE,
    "describe": describe.STAGE,
    "prompt": prompt.STAGE,
    "generate": generate.STAGE,
    "report": report.STAGE,
}
