"""full_load_control's dispatch: one workflow step per invocation, errors classified for Retry/Catch."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
from botocore.exceptions import ClientError

from ...core.access import TargetAccess
from ...core.clients import client_config
from ...core.errors import PermanentError, RetryableError, classify, describe, error_code, is_credential_error
from ...core.observability import logger
from ...core.steps import call_budget, step_errors
from ..settings import FullLoadSettings, load_full_load_settings
from ..stepinput import FULL_LOAD_FIELDS, check
from .clients import FullLoadClients, Json
from .export import copy_export, describe_export, start_export
from .handover import describe_replication, enable_replication
from .import_table import describe_import, start_import
from .plan import plan
from .precheck import precheck

# ---- dispatch ----------------------------------------------------------------------------------------------
_RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "InternalServerError",
        "InternalServerErrorException",
        "ServiceUnavailable",
        "ServiceException",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
        "SlowDown",
        "InternalError",
    }
)
_NEEDS = {
    "plan": (),
    "precheck": ("plan",),
    "start_export": ("plan", "precheck"),
    "describe_export": ("plan", "precheck", "export"),
    "copy_export": ("plan", "precheck", "export"),
    "start_import": ("plan", "precheck", "export"),
    "describe_import": ("plan", "precheck", "export", "import"),
    "enable_replication": ("plan", "precheck", "export"),
    "describe_replication": ("replication",),
}


def classify_step(exc: BaseException) -> PermanentError | RetryableError:
    """A workflow step retries throttling, 5xx, network and credential errors; anything else fails it."""
    if isinstance(exc, (PermanentError, RetryableError)):
        return exc
    code = error_code(exc)
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in _RETRYABLE_CODES or status >= 500 or is_credential_error(exc):
            return RetryableError(code, describe(exc))
        return PermanentError(code, describe(exc))
    return classify(exc)  # network errors are retryable, our own bugs permanent


def _step(action: str, event: Json, settings: FullLoadSettings, clients: FullLoadClients, budget: float) -> Json:
    if action == "plan":
        return plan(event, settings, clients.now_ms())
    if action == "precheck":
        return precheck(event["plan"], settings, clients)
    if action == "start_export":
        return start_export(event["plan"], event["precheck"], clients)
    if action == "describe_export":
        return describe_export(event["plan"], event["precheck"], event["export"], clients)
    if action == "copy_export":
        return copy_export(event["plan"], event["precheck"], event["export"], event.get("copy") or {}, clients, budget)
    if action == "start_import":
        return start_import(event["plan"], event["precheck"], event["export"], clients)
    if action == "describe_import":
        return describe_import(event["plan"], event["precheck"], event["export"], event["import"], clients)
    if action == "enable_replication":
        return enable_replication(event["plan"], event["precheck"], event["export"], clients)
    return describe_replication(event["replication"], clients)


def run_action(event: Json, settings: FullLoadSettings, clients: FullLoadClients, budget_seconds: float) -> Json:
    """One step of the workflow, by `event["action"]`; AWS errors become RetryableError or PermanentError."""
    action = str(event.get("action"))
    if action not in _NEEDS:
        raise PermanentError("UnknownAction", f"unknown action {action!r}; expected one of {', '.join(_NEEDS)}")
    missing = [name for name in _NEEDS[action] if not isinstance(event.get(name), dict)]
    if missing:
        raise PermanentError("BadStepInput", f"step {action!r} needs {', '.join(missing)} in its input")
    check(action, event, FULL_LOAD_FIELDS[action])
    with step_errors(clients.target.refresh, classify_step):
        return _step(action, event, settings, clients, budget_seconds)


# ---- the Lambda --------------------------------------------------------------------------------------------
COPY_BUDGET_MAX_SECONDS = 600.0


@dataclass
class Runtime:
    """What a warm full_load_control keeps between invocations."""

    settings: FullLoadSettings
    clients: FullLoadClients


@cache
def runtime() -> Runtime:
    """Settings and clients, built once per cold start; a bad setting fails here with its name."""
    settings = load_full_load_settings()
    config = client_config(max_attempts=8)
    clients = FullLoadClients(
        dynamodb=boto3.client("dynamodb", region_name=settings.source_region, config=config),
        lambda_=boto3.client("lambda", region_name=settings.source_region, config=config),
        s3=boto3.client("s3", region_name=settings.source_region, config=config),
        target=TargetAccess.of(settings.target, settings.peer),
    )
    return Runtime(settings, clients)


def handle(event: Json, context: Any) -> Json:
    """One workflow step; the copy step is bounded by the invocation's remaining time."""
    rt = runtime()
    logger.append_keys(action=event.get("action"), execution=(event.get("plan") or {}).get("execution"))
    return run_action(event, rt.settings, rt.clients, call_budget(context, most=COPY_BUDGET_MAX_SECONDS))
