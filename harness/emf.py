"""CloudWatch metrics in moto: what the functions emit as EMF, and the event source's IteratorAge.

On AWS, CloudWatch turns the functions' EMF log lines (Powertools Metrics) into metrics, and Lambda's
event source mapping publishes IteratorAge. moto has neither path, so `ddb-bridge status` would find no
datapoints. `capture()` turns every EMF blob a function flushes into PutMetricData on moto (same namespace,
dimensions, names, units and values; the EMF line is still printed, unless metrics are disabled), and
`with_iterator_age()` wraps a poller's handler so each invocation publishes AWS/Lambda IteratorAge (the
age of the batch's last record, in milliseconds) as Lambda does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

_lock = threading.Lock()


def metric_data(blob: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """One EMF blob -> (namespace, PutMetricData's MetricData)."""
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    when = datetime.fromtimestamp(blob["_aws"]["Timestamp"] / 1000, UTC)
    dimension_names = directive["Dimensions"][0] if directive["Dimensions"] else []
    dimensions = [{"Name": name, "Value": str(blob[name])} for name in dimension_names]
    data = []
    for metric in directive["Metrics"]:
        value = blob[metric["Name"]]
        values = value if isinstance(value, list) else [value]
        data.append(
            {
                "MetricName": metric["Name"],
                "Dimensions": dimensions,
                "Values": [float(v) for v in values],
                "Unit": metric.get("Unit", "None"),
                "Timestamp": when,
            }
        )
    return str(directive["Namespace"]), data


class Capture:
    """Where captured metrics go: moto's CloudWatch of the default account, or per `service` another one."""

    def __init__(self, cloudwatch: Any) -> None:
        self.cloudwatch = cloudwatch
        self.routes: dict[str, Any] = {}  # service -> the CloudWatch client of the account/region it runs in
        self.sent: list[tuple[str, list[dict[str, Any]]]] = []

    def route(self, service: str, cloudwatch: Any) -> None:
        """Send the metrics of the function whose `service` this is to `cloudwatch` (another account or region)."""
        self.routes[service] = cloudwatch

    def put(self, blob: dict[str, Any]) -> None:
        """One EMF blob as PutMetricData."""
        namespace, data = metric_data(blob)
        client = self.routes.get(str(blob.get("service")), self.cloudwatch)
        with _lock:
            client.put_metric_data(Namespace=namespace, MetricData=data)
            self.sent.append((namespace, data))


@contextmanager
def capture(cloudwatch: Any | None = None) -> Iterator[Capture]:
    """While active, every EMF flush becomes PutMetricData on moto (even with POWERTOOLS_METRICS_DISABLED)."""
    sink = Capture(cloudwatch or boto3.client("cloudwatch"))
    original = AmazonCloudWatchEMFProvider.flush_metrics

    def flush(self: AmazonCloudWatchEMFProvider, raise_on_empty_metrics: bool = False) -> None:
        if not self.metric_set:
            return
        if self.service:  # Powertools shares its metric set across instances: in Lambda, one function per process
            self.dimension_set["service"] = str(self.service)
        blob = self.serialize_metric_set()
        self.clear_metrics()
        if not is_metrics_disabled():
            print(json.dumps(blob, separators=(",", ":")))  # the EMF log line, as Powertools prints it
        sink.put(blob)

    Metrics().clear_metrics()  # what earlier functions left unflushed (metrics disabled) is not this capture's
    AmazonCloudWatchEMFProvider.flush_metrics = flush  # type: ignore[method-assign]
    try:
        yield sink
    finally:
        AmazonCloudWatchEMFProvider.flush_metrics = original  # type: ignore[method-assign]


def with_iterator_age(
    handler: Callable[[dict[str, Any]], Any], function_name: str, cloudwatch: Any | None = None
) -> Callable[[dict[str, Any]], Any]:
    """A poller handler that first publishes IteratorAge for the batch, as Lambda's event source does."""
    cloudwatch = cloudwatch or boto3.client("cloudwatch")

    def invoke(event: dict[str, Any]) -> Any:
        records = event.get("Records") or []
        if records:
            created = float(records[-1]["dynamodb"]["ApproximateCreationDateTime"])
            cloudwatch.put_metric_data(
                Namespace="AWS/Lambda",
                MetricData=[
                    {
                        "MetricName": "IteratorAge",
                        "Dimensions": [{"Name": "FunctionName", "Value": function_name}],
                        "Value": max(0.0, (time.time() - created) * 1000),
                        "Unit": "Milliseconds",
                    }
                ],
            )
        return handler(event)

    return invoke
