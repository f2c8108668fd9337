"""bucket_backfill: plans statemachine/bucket_backfill.asl.json, copies one key range at a time, sums up."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from ddb_bridge.core.observability import logger, metrics, tracer
from ddb_bridge.s3.backfill import handle, runtime

runtime()  # cold start: a bad setting fails here, naming the variable and what it expects


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Run one step (`event["action"]`): plan, copy (part of a key range) or summarize."""
    return handle(event, context)
