"""docs/datasets.md: the worked example runs as pasted, on tables the pipeline wrote; the YAML is valid."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from rangebar_pipeline.config import parse_config
from tests.pipeline_support import DAYS, SERIES, TEST_CONFIG, PipelineEnv, pipeline_env

DOC = Path(__file__).resolve().parents[1] / "docs" / "datasets.md"


def blocks(language: str, after: str = "") -> list[str]:
    text = DOC.read_text()
    return re.findall(rf"```{language}\n(.*?)```", text[text.index(after) :], flags=re.S)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelineEnv]:
    yield from pipeline_env(tmp_path, monkeypatch)


def test_the_worked_example_runs_on_the_pipelines_feature_table(env: PipelineEnv) -> None:
    for day in DAYS:
        assert env.materialize(["ticks", "range_bars_25", "features_25"], f"{day}|{SERIES}").success
    (example,) = blocks("python", "## Worked example")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example, str(DOC), "exec"), {"__name__": "docs_example"})
    output = printed.getvalue()
    assert re.search(r"version \d+: \d+ train / \d+ test bars, test R2", output), output
    assert "purged 5-fold R2: [" in output and "tb_label" in output


def test_the_documented_labels_section_is_valid_config() -> None:
    (section,) = [b for b in blocks("yaml") if b.startswith("labels:")]
    config = parse_config(TEST_CONFIG | yaml.safe_load(section))
    assert config.labels == parse_config(TEST_CONFIG).labels  # the documented values are the defaults
