"""relay_applier: this region's Kinesis stream (changes relayed by the peer) -> the local table."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from ddb_bridge.core.observability import logger, metrics, tracer
from ddb_bridge.relay.applier import handle, runtime

runtime()  # cold start: a bad setting fails here, naming the variable and what it expects


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Apply one Kinesis batch by version; the response lists the records Lambda must retry."""
    return handle(event, context)
