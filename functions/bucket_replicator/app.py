"""bucket_replicator: bucket events (SQS: S3 notifications or EventBridge) -> the target bucket."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from ddb_bridge.core.observability import logger, metrics, tracer
from ddb_bridge.s3.replicator import handle, runtime

runtime()  # cold start: a bad setting fails here, naming the variable and what it expects


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Sync each event's key; the response lists the messages SQS must deliver again."""
    return handle(event, context)
