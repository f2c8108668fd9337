"""templates/observability.yaml and templates/progress.yaml: one lag definition, the alarms an operator needs."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from ddb_bridge.core.observability import LAG, NAMESPACE
from ddb_bridge.table.progress import TTL_SECONDS

ROOT = Path(__file__).resolve().parents[2]


@cache
def load(name: str) -> dict[str, Any]:
    template, matches = decode(str(ROOT / "templates" / name))
    assert not matches, matches
    return template


def alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: r["Properties"] for n, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def dashboard(template: dict[str, Any]) -> dict[str, Any]:
    """The dashboard body, every ${Var} replaced by a placeholder, parsed as JSON."""
    body, _ = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    return json.loads(re.sub(r"\$\{[A-Za-z0-9_:]+\}", "placeholder", body))


def metrics_of(widget: dict[str, Any]) -> list[list[Any]]:
    return [m for m in widget["properties"]["metrics"] if isinstance(m[0], str)]


def test_the_lag_alarms_and_the_lag_widget_use_the_one_lag_definition():
    template = load("observability.yaml")
    lag_alarms = {n: a for n, a in alarms(template).items() if "Lag" in n}
    assert set(lag_alarms) == {"ReplicatorLagAlarm", "RelayLagAlarm", "ApplierLagAlarm"}
    for alarm in lag_alarms.values():
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Unit"]) == (NAMESPACE, LAG.name, LAG.unit.value)
        assert alarm["Dimensions"][0]["Name"] == "service"
        assert template["Parameters"][alarm["Threshold"]["Ref"]]["Default"] >= 1000  # milliseconds, not seconds
    (lag_widget,) = [w for w in dashboard(template)["widgets"] if w["properties"]["title"].startswith("Lag")]
    assert {(m[0], m[1]) for m in metrics_of(lag_widget)} == {(NAMESPACE, LAG.name)}
    assert "(ms)" in lag_widget["properties"]["title"]


def test_the_dashboard_shows_what_an_operator_watches():
    names = {m[1] for w in dashboard(load("observability.yaml"))["widgets"] for m in metrics_of(w)}
    assert {
        LAG.name,
        "IteratorAge",
        "ChangesApplied",
        "ChangesForwarded",
        "WriteRequests",
        "ApproximateNumberOfMessagesVisible",
        "RecordsParked",
        "BytesToPeer",
        "KinesisRecordsPut",
        "VerifyDifferences",
        "ExecutionsFailed",
        "Throttles",
    } <= names


def test_every_absent_piece_has_a_placeholder_never_an_empty_dimension():
    _, variables = load("observability.yaml")["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    for name, value in variables.items():
        assert value["Fn::If"][2] == "none", name


@pytest.mark.parametrize("workflow", ["FullLoad", "Backfill", "Verify"])
def test_failed_or_timed_out_executions_of_each_workflow_raise_an_alarm(workflow):
    alarm = alarms(load("observability.yaml"))[f"{workflow}FailedAlarm"]
    stats = {m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Metrics"] if "MetricStat" in m}
    assert stats == {"ExecutionsFailed", "ExecutionsTimedOut"}
    for m in alarm["Metrics"]:
        if "MetricStat" in m:
            assert m["MetricStat"]["Metric"]["Dimensions"][0]["Value"] == {"Ref": f"{workflow}StateMachineArn"}
    assert alarm["Threshold"] == 0 and alarm["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize("function", ["Replicator", "Relay", "Applier"])
def test_each_stream_function_has_a_throttles_alarm(function):
    alarm = alarms(load("observability.yaml"))[f"{function}ThrottlesAlarm"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/Lambda", "Throttles", "Sum")


def test_the_progress_table_expires_its_items_after_the_stream_retention():
    table = load("progress.yaml")["Resources"]["ReplicatorProgressTable"]["Properties"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["pk", "sk"]
    assert TTL_SECONDS > 24 * 3600


@pytest.mark.parametrize("name", ["observability.yaml", "progress.yaml"])
def test_no_hard_coded_partition_and_every_alarm_notifies_the_topic_when_given(name):
    text = (ROOT / "templates" / name).read_text()
    assert "arn:aws:" not in text, "hard-coded arn:aws: breaks China (aws-cn) regions"
    for alarm in alarms(load(name)).values():
        assert alarm["AlarmActions"] == {
            "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        }
