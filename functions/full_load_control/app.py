"""full_load_control: the steps of statemachine/full_load.asl.json that run in the source or target account."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from ddb_bridge.core.observability import logger, metrics, tracer
from ddb_bridge.loads.fullload.handler import handle, runtime

runtime()  # cold start: a bad setting fails here, naming the variable and what it expects


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Run one step (`event["action"]`): plan, precheck, export, copy, import, enable replication."""
    return handle(event, context)
