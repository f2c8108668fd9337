"""verify: plans statemachine/verify.asl.json, compares, rechecks or repairs one slice of a segment, reports."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from ddb_bridge.core.observability import logger, metrics, tracer
from ddb_bridge.verify.handler import handle, runtime

runtime()  # cold start: a bad setting fails here, naming the variable and what it expects


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Run one step (`event["action"]`): plan, scan, recheck, repair, report or summarize."""
    return handle(event, context)
