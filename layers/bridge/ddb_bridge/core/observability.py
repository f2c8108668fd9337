"""Logger, Tracer and Metrics, created once for every function of the layer."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="DdbBridge")

__all__ = ["MetricUnit", "logger", "metrics", "tracer"]
