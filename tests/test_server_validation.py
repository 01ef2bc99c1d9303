"""Settings the MCP tools refuse when they are written, in the words the assistant reads (one line, no traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from conftest import snapshot
from test_server import fails, ok, seed

pytestmark = pytest.mark.anyio

KEY_RULE = (
    "is not allowed: name a variable ending in _API_KEY (e.g. AZURE_OPENAI_API_KEY), so no other secret can be "
    "sent to a judge endpoint."
)


async def test_an_api_key_env_a_run_would_refuse_is_refused_by_create_and_update(
    client: Client, db_path: Path
) -> None:
    await seed(client)
    before = snapshot(db_path)

    created = await fails(client, "create_evaluator", name="x", judge={"api_key_env": "HOME"})
    updated = await fails(
        client, "update_draft", evaluator="correctness", judge={"api_key_env": "AWS_SECRET_ACCESS_KEY"}
    )

    assert created == f"Error executing tool create_evaluator: api_key_env='HOME' {KEY_RULE}"
    assert updated == f"Error executing tool update_draft: api_key_env='AWS_SECRET_ACCESS_KEY' {KEY_RULE}"
    assert snapshot(db_path) == before


async def test_labels_that_differ_only_in_case_are_refused_by_create_evaluator(client: Client) -> None:
    message = await fails(
        client, "create_evaluator", name="tone", score_type="categorical", labels=["Good", "good", "bad"]
    )

    assert message == (
        "Error executing tool create_evaluator: Categorical labels 'Good' and 'good' differ only in case or "
        "spaces, and scores are matched ignoring both, so a score such as 'GOOD' could mean either. Give every "
        "label a distinct name."
    )
    assert (await ok(client, "list_evaluators"))["evaluators"] == []


async def test_a_sample_below_one_says_the_sample_size_must_be_positive(
    client: Client, db_path: Path
) -> None:
    await seed(client)
    await ok(client, "add_to_queue", evaluator="correctness", source="support")
    before = snapshot(db_path)

    message = await fails(client, "add_to_queue", evaluator="correctness", source="support", sample=-5)

    assert message == (
        "Error executing tool add_to_queue: sample=-5: the sample size must be a positive number of runs "
        "(at least 1)."
    )
    assert snapshot(db_path) == before
