"""The ASL files of statemachine/: substitutions match the templates, and every state keeps the house rules.

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

from scripts.render_template import Template, application, load

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
    """The application's state machines (root and nested templates) by their definition's path in the repository."""
    found: dict[str, dict[str, Any]] = {}
    templates = application()
    wired = {t.path.resolve() for t in templates}
    # a nested template the root does not nest yet (templates/s3.yaml, verify.yaml until wired) is checked too
    templates += [Template(p, load(p)) for p in sorted((ROOT / "templates").glob("*.yaml")) if p.resolve() not in wired]
    for template in templates:
        for machine in template.resources("AWS::Serverless::StateMachine").values():
            path = template.local_path(machine["Properties"]["DefinitionUri"]).relative_to(ROOT).as_posix()
            assert path not in found, f"two state machines run {path}"
            found[path] = machine["Properties"]
    return found


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
    assert [p.name for p in ASL_FILES] == [
        "backfill.asl.json",
        "bucket_backfill.asl.json",
        "full_load.asl.json",
        "verify.asl.json",
    ]
    assert sorted(state_machines()) == [f"statemachine/{p.name}" for p in ASL_FILES]


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
