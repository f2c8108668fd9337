"""Logger, Tracer and Metrics, created once for every function of the layer; the metric definitions others read."""

from __future__ import annotations

from dataclasses import dataclass

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

NAMESPACE = "DdbBridge"
SERVICE_DIMENSION = "service"  # Powertools' default dimension: POWERTOOLS_SERVICE_NAME of each function

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace=NAMESPACE)


@dataclass(frozen=True)
class MetricDef:
    """A metric's name and unit: the functions emit it, and the dashboard, alarms and CLI read it by this."""

    name: str
    unit: MetricUnit


LAG = MetricDef("ReplicationLag", MetricUnit.Milliseconds)
"""Lag: per batch, the largest age of a change when its function finished with it (milliseconds).

Age = the moment the function's write (or, for stream_relay, its PutRecords to the peer) succeeded minus
the stream record's ApproximateCreationDateTime. Every stream function emits it under the dimension
`service`; templates/observability.yaml (dashboard, lag alarm) and `ddb-bridge status` read it by this name.
"""
CHANGES_APPLIED = MetricDef("ChangesApplied", MetricUnit.Count)

__all__ = [
    "CHANGES_APPLIED",
    "LAG",
    "NAMESPACE",
    "SERVICE_DIMENSION",
    "MetricDef",
    "MetricUnit",
    "logger",
    "metrics",
    "tracer",
]
