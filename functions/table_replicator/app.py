"""table_replicator: DynamoDB stream -> target table (same partition, assumed role)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from ddb_bridge.core.observability import logger, metrics, tracer
from ddb_bridge.table.progress import progress_log
from ddb_bridge.table.replicator import handle, runtime

runtime()  # cold start: a bad setting fails here, naming the variable and what it expects
progress_log()  # cold start: the progress table's session, on this function's own credentials


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Apply one stream batch; the response lists the records Lambda must retry, in order."""
    return handle(event, context)
