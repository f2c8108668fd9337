"""The ASL files of statemachine/: substitutions match template.yaml, and every state keeps the house rules.

(moto's Step Functions engine validates and runs them in tests/integration/test_full_load.py and
test_backfill.py; these checks cover what an engine does not: retries, catches, readable names.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
ASL_FILES = sorted((ROOT / "statemachine").glob("*.asl.json"))
SUBSTITUTION = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
LAMBDA_SERVICE_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}


def state_machines() -> dict[str, dict[str, Any]]:
    """The state machines of template.yaml and its nested templates (templates/), by DefinitionUri from the root."""
    out: dict[str, dict[str, Any]] = {}
    for path in [ROOT / "template.yaml", *sorted((ROOT / "templates").glob("*.yaml"))]:
        template, matches = decode(str(path))
        assert not matches, matches
        for r in template["Resources"].values():
            if r["Type"] == "AWS::Serverless::StateMachine":
                uri = (path.parent / r["Properties"]["DefinitionUri"]).resolve().relative_to(ROOT)
                out[str(uri)] = r["Properties"]
    return out


def all_states(definition: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(name, state, inside a Map's item processor) for every state, nested ones too."""
    for name, state in definition["States"].items():
        yield f"{path}{name}", state, bool(path)
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from all_states(processor, f"{path}{name} / ")
        for branch in state.get("Branches", []):
            yield from all_states(branch, f"{path}{name} / ")


def test_there_are_workflows() -> None:
    assert [p.name for p in ASL_FILES] == ["backfill.asl.json", "full_load.asl.json", "verify.asl.json"]


@pytest.mark.parametrize("path", ASL_FILES, ids=lambda p: p.name)
def test_every_substitution_is_defined_in_the_template_and_used(path: Path) -> None:
    machines = state_machines()
    uri = f"statemachine/{path.name}"
    assert uri in machines, f"no AWS::Serverless::StateMachine with DefinitionUri {uri}"
    used = set(SUBSTITUTION.findall(path.read_text()))
    defined = set(machines[uri].get("DefinitionSubstitutions", {}))
    assert used, "expected at least the function ARN to be substituted"
    assert used <= defined, f"missing DefinitionSubstitutions: {sorted(used - defined)}"
    assert defined <= used, f"unused DefinitionSubstitutions: {sorted(defined - used)}"


@pytest.mark.parametrize("path", ASL_FILES, ids=lambda p: p.name)
def test_every_task_retries_transient_errors_and_every_failure_is_caught(path: Path) -> None:
    definition = json.loads(path.read_text())
    tasks = [(n, s, nested) for n, s, nested in all_states(definition) if s["Type"] == "Task"]
    assert tasks
    for name, state, nested in tasks:
        retried = {e for r in state.get("Retry", []) for e in r["ErrorEquals"]}
        assert retried >= LAMBDA_SERVICE_ERRORS, name
        assert "RetryableError" in retried, name
        assert all(r.get("BackoffRate", 1) >= 2 and r.get("MaxAttempts", 3) >= 3 for r in state["Retry"]), name
        assert "TimeoutSeconds" in state, name
        if not nested:  # a Map's item processor fails the Map, whose own Catch takes over
            assert any("States.ALL" in c["ErrorEquals"] for c in state.get("Catch", [])), name
    for name, state, _ in all_states(definition):
        if state["Type"] == "Map":
            assert any("States.ALL" in c["ErrorEquals"] for c in state.get("Catch", [])), name


@pytest.mark.parametrize("path", ASL_FILES, ids=lambda p: p.name)
def test_states_are_readable_reachable_and_fail_with_a_cause(path: Path) -> None:
    definition = json.loads(path.read_text())
    assert len(definition["Comment"]) > 80
    for name, state, _ in all_states(definition):
        leaf = name.rsplit(" / ", 1)[-1]
        assert leaf[0].isupper() and " " in leaf, f"state name {leaf!r} should read as a sentence"
        if state["Type"] == "Fail":
            assert "Error" in state or "ErrorPath" in state, name
            assert "CausePath" in state, f"{name}: a Fail state must carry a readable cause"
        if state["Type"] == "Choice":
            assert "Default" in state, name
        if state["Type"] == "Wait":
            assert "SecondsPath" in state, name

    def reachable(machine: dict[str, Any]) -> None:
        seen: set[str] = set()
        todo = [machine["StartAt"]]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            state = machine["States"][current]
            targets = [state.get("Next"), state.get("Default")]
            targets += [c["Next"] for c in state.get("Choices", []) + state.get("Catch", [])]
            todo += [t for t in targets if t]
            assert all(t in machine["States"] for t in targets if t), current
            if "ItemProcessor" in state:
                reachable(state["ItemProcessor"])
        assert seen == set(machine["States"]), f"unreachable: {set(machine['States']) - seen}"

    reachable(definition)
