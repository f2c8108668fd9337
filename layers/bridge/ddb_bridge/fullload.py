"""The full load (statemachine/full_load.asl.json): export at time T, import as a new table, hand over to CDC.

Each function below is one step the state machine calls through functions/full_load_control. The
steps return plain JSON that the workflow carries and shows in the console; expected failures (a bad
input, a failed pre-check, an export that failed, the stream retention about to run out) are verdicts
with a readable `message` that a Choice turns into a Fail state, while AWS errors raise
RetryableError / PermanentError for the state's Retry and Catch.

The handover is gap-free (DESIGN.md §7): the replicator's event source is created disabled at
TRIM_HORIZON before the export, so when it is enabled after the import it replays every change since
the oldest record in the stream, which is older than T as long as the handover happens within the
stream's 24 h retention. The retention guard stops the workflow *before* a record after T can expire.
"""

from __future__ import annotations

import difflib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3
from botocore.exceptions import ClientError

from .clients import client_config
from .errors import PermanentError, RetryableError, classify, error_code, is_credential_error
from .observability import MetricUnit, logger, metrics
from .settings import FullLoadSettings, load_full_load_settings
from .target_access import PeerKeys, TargetAccess

STREAM_RETENTION_SECONDS = 24 * 3600
ENABLE_TIMEOUT_SECONDS = 15 * 60
NEVER_PROCESSED = (None, "", "No records processed")
Json = dict[str, Any]


class InvalidInput(ValueError):
    """The execution input is wrong; the message says which field and what it expects."""


class RetentionExceeded(PermanentError):
    """The handover can no longer happen before stream records after the export point expire: stop now."""

    def __init__(self, message: str) -> None:
        super().__init__("RetentionExceeded", message)


@dataclass
class FullLoadClients:
    """Clients of the source account and region, and the target side's access."""

    dynamodb: Any
    lambda_: Any
    s3: Any
    target: TargetAccess
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000)


# ---- input -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Field:
    minimum: int
    maximum: int
    default: int
    unit: str


def _input_fields(settings: FullLoadSettings) -> dict[str, _Field]:
    return {
        "pollSeconds": _Field(1, 3600, 60, "seconds between two DescribeExport/DescribeImport calls"),
        "exportTimeoutMinutes": _Field(1, 1440, 360, "minutes the export may take"),
        "importTimeoutMinutes": _Field(1, 2880, 1380, "minutes the import may take"),
        "handoverSafetyMinutes": _Field(
            10,
            720,
            settings.safety_minutes,
            "minutes kept in hand before the stream's 24 h retention, for replication to catch up",
        ),
    }


def _whole_number(name: str, value: Any, spec: _Field) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidInput(
            f"{name} must be a whole number from {spec.minimum} to {spec.maximum} ({spec.unit}), got {value!r}"
        )
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(
            f"{name} must be a whole number from {spec.minimum} to {spec.maximum} ({spec.unit}), got {value!r}"
        ) from None
    if not spec.minimum <= number <= spec.maximum:
        raise InvalidInput(f"{name} must be from {spec.minimum} to {spec.maximum} ({spec.unit}), got {number}")
    return number


def parse_input(raw: Any, settings: FullLoadSettings) -> dict[str, int]:
    """The execution input with defaults filled in; InvalidInput names the first bad field."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidInput(f"the execution input must be a JSON object, got {type(raw).__name__}")
    fields = _input_fields(settings)
    for name in raw:
        if name not in fields and name != "comment":
            close = difflib.get_close_matches(name, list(fields), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise InvalidInput(f"unknown field {name!r}{hint}; allowed: {', '.join(fields)}, comment")
    return {
        name: _whole_number(name, raw[name], spec) if name in raw else spec.default for name, spec in fields.items()
    }


def plan(event: Json, settings: FullLoadSettings, now_ms: int) -> Json:
    """Validate the input and fix every name the run will use (prefix, client token, deadlines)."""
    execution = str(event.get("execution") or "manual")
    try:
        values = parse_input(event.get("input"), settings)
    except InvalidInput as exc:
        message = f"Invalid input: {exc}. Fix the execution input and start a new execution."
        metrics.add_metric(name="FullLoadInvalidInput", unit=MetricUnit.Count, value=1)
        return {"valid": False, "message": message}
    token = hashlib.sha256(f"{settings.source_table}/{execution}".encode()).hexdigest()[:32]
    return {
        "valid": True,
        "execution": execution,
        "clientToken": token,
        "sourceTable": settings.source_table,
        "sourceRegion": settings.source_region,
        "targetTable": settings.target.table,
        "targetRegion": settings.target.region,
        "crossPartition": settings.cross_partition,
        "exportBucket": settings.export_bucket,
        "exportBucketOwner": settings.export_bucket_owner,
        "exportPrefix": f"{settings.export_prefix}/{_safe_key(execution)}",
        "peerBucket": settings.peer_bucket,
        "pollSeconds": values["pollSeconds"],
        "exportTimeoutSeconds": values["exportTimeoutMinutes"] * 60,
        "importTimeoutSeconds": values["importTimeoutMinutes"] * 60,
        "safetySeconds": values["handoverSafetyMinutes"] * 60,
        "plannedAt": now_ms,
    }


def _safe_key(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)[:120] or "run"


# ---- pre-checks --------------------------------------------------------------------------------------------
@dataclass
class _Checks:
    results: list[Json]

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.results.append({"check": name, "ok": ok, "detail": detail})

    @property
    def failed(self) -> list[Json]:
        return [r for r in self.results if not r["ok"]]


def precheck(plan_: Json, settings: FullLoadSettings, clients: FullLoadClients) -> Json:
    """Everything that must hold before the export, each failure with how to fix it."""
    checks = _Checks([])
    table = settings.source_table
    region = settings.source_region
    out: Json = {"passed": False}
    try:
        desc = clients.dynamodb.describe_table(TableName=table)["Table"]
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        checks.add(
            "source table",
            False,
            f"Source table {table} does not exist in {region}: check "
            "SourceTableName, or deploy the stack in the table's region.",
        )
        return _verdict(out, checks)
    out["sourceTableArn"] = desc["TableArn"]
    status = desc.get("TableStatus", "ACTIVE")
    checks.add(
        "source table",
        status == "ACTIVE",
        f"Source table {table} is {status}; wait until it is ACTIVE and start again."
        if status != "ACTIVE"
        else f"{table} is ACTIVE",
    )

    pitr = (
        clients.dynamodb.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
        .get("PointInTimeRecoveryDescription", {})
        .get("PointInTimeRecoveryStatus")
    )
    checks.add(
        "point-in-time recovery",
        pitr == "ENABLED",
        "PITR is enabled"
        if pitr == "ENABLED"
        else f"Point-in-time recovery is {pitr or 'DISABLED'} on {table}: the export needs it. Enable it with: "
        f"aws dynamodb update-continuous-backups --table-name {table} --region {region} "
        "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true",
    )

    spec = desc.get("StreamSpecification") or {}
    stream_arn = desc.get("LatestStreamArn") if spec.get("StreamEnabled") else None
    view = spec.get("StreamViewType")
    stream_ok = bool(stream_arn) and view == "NEW_AND_OLD_IMAGES"
    checks.add(
        "stream",
        stream_ok,
        f"stream {stream_arn} with NEW_AND_OLD_IMAGES"
        if stream_ok
        else (
            f"The stream of {table} is {'off' if not stream_arn else view}: live replication needs a stream "
            "with NEW_AND_OLD_IMAGES. "
            + ("Disable the stream, then enable it again with: " if stream_arn else "Enable it with: ")
            + f"aws dynamodb update-table --table-name {table} --region {region} --stream-specification "
            "StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES ; then redeploy the stack with "
            "SourceStreamArn set to the new stream ARN and ReplicationEnabled=false."
        ),
    )

    lsis = [i["IndexName"] for i in desc.get("LocalSecondaryIndexes") or []]
    checks.add(
        "local secondary indexes",
        not lsis,
        "no local secondary indexes"
        if not lsis
        else f"{table} has local secondary indexes ({', '.join(lsis)}) and ImportTable cannot create them. "
        "Create the target table yourself with the same indexes and load it with the backfill workflow.",
    )

    if stream_arn:
        out["streamArn"] = stream_arn
        _check_mapping(checks, out, settings, clients, stream_arn)

    _check_target(checks, settings, clients)
    out["tableCreation"] = table_creation(desc, settings.target.table)
    return _verdict(out, checks)


def _verdict(out: Json, checks: _Checks) -> Json:
    failed = checks.failed
    out["checks"] = checks.results
    out["passed"] = not failed
    if failed:
        lines = "\n".join(f"- {r['check']}: {r['detail']}" for r in failed)
        out["message"] = f"{len(failed)} pre-check(s) failed, nothing was exported:\n{lines}"
        metrics.add_metric(name="FullLoadPreCheckFailures", unit=MetricUnit.Count, value=len(failed))
    else:
        out["message"] = "all pre-checks passed"
    return out


def find_mappings(lambda_client: Any, function: str, stream_arn: str) -> list[Json]:
    """Every event source mapping from the stream to the function."""
    mappings: list[Json] = []
    kwargs: Json = {"FunctionName": function, "EventSourceArn": stream_arn}
    while True:
        page = lambda_client.list_event_source_mappings(**kwargs)
        mappings.extend(page.get("EventSourceMappings", []))
        if not page.get("NextMarker"):
            return mappings
        kwargs["Marker"] = page["NextMarker"]


def _check_mapping(
    checks: _Checks, out: Json, settings: FullLoadSettings, clients: FullLoadClients, stream_arn: str
) -> None:
    function = settings.replicator_function
    recreate = (
        "deploy the stack with ReplicationEnabled=false (it creates the mapping disabled at TRIM_HORIZON), "
        f"or: aws lambda create-event-source-mapping --function-name {function} --event-source-arn "
        f"{stream_arn} --starting-position TRIM_HORIZON --no-enabled"
    )
    try:
        clients.lambda_.get_function_configuration(FunctionName=function)
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        checks.add(
            "event source",
            False,
            f"The replicator function {function} does not exist: deploy the stack "
            "(Scenario=one-way) and set REPLICATOR_FUNCTION_NAME to its table_replicator function.",
        )
        return
    if settings.mapping_uuid:
        # The stack names the mapping: reading just that one needs no permission on every mapping.
        try:
            mapping = clients.lambda_.get_event_source_mapping(UUID=settings.mapping_uuid)
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            checks.add(
                "event source",
                False,
                f"The event source mapping {settings.mapping_uuid} "
                f"(EVENT_SOURCE_MAPPING_UUID) does not exist: {recreate}, and redeploy with its UUID.",
            )
            return
        if mapping.get("EventSourceArn") != stream_arn or not str(mapping.get("FunctionArn", "")).endswith(
            f":function:{function.rsplit(':', 1)[-1]}"
        ):
            checks.add(
                "event source",
                False,
                f"The event source mapping {settings.mapping_uuid} connects "
                f"{mapping.get('EventSourceArn')} to {mapping.get('FunctionArn')}, not the table's current "
                f"stream {stream_arn} to {function}: redeploy the stack with SourceStreamArn={stream_arn}.",
            )
            return
        mappings = [mapping]
    else:
        mappings = find_mappings(clients.lambda_, function, stream_arn)
    if not mappings:
        checks.add(
            "event source",
            False,
            f"No event source mapping from {stream_arn} to {function}: "
            f"create it before the export so no change is missed: {recreate}.",
        )
        return
    if len(mappings) > 1:
        uuids = ", ".join(m["UUID"] for m in mappings)
        checks.add(
            "event source",
            False,
            f"{len(mappings)} event source mappings ({uuids}) from the stream to "
            f"{function}: keep exactly one, disabled at TRIM_HORIZON (delete the others with "
            "aws lambda delete-event-source-mapping --uuid ...).",
        )
        return
    mapping = mappings[0]
    uuid = mapping["UUID"]
    out["mappingUuid"] = uuid
    problems = []
    if mapping.get("State") != "Disabled":
        problems.append(
            f"it is {mapping.get('State')}, so it would replicate into a table the import has not "
            "created yet and move its position past TRIM_HORIZON"
        )
    if mapping.get("StartingPosition") != "TRIM_HORIZON":
        problems.append(
            f"it starts at {mapping.get('StartingPosition')}, so changes made between the export "
            "and the handover would be lost (it must start at TRIM_HORIZON)"
        )
    if mapping.get("LastProcessingResult") not in NEVER_PROCESSED:
        problems.append(
            f"it has already processed records ({mapping.get('LastProcessingResult')}), so it would "
            "resume from its checkpoint instead of TRIM_HORIZON"
        )
    max_age = mapping.get("MaximumRecordAgeInSeconds")
    if max_age not in (None, -1) and int(max_age) < STREAM_RETENTION_SECONDS:
        problems.append(
            f"MaximumRecordAgeInSeconds={max_age} would discard the changes older than that at the "
            "handover (set it to -1)"
        )
    out["maxRecordAgeSeconds"] = None if max_age in (None, -1) else int(max_age)
    if problems:
        checks.add(
            "event source",
            False,
            f"The event source mapping {uuid} cannot take over: "
            + "; ".join(problems)
            + f". Delete it (aws lambda delete-event-source-mapping --uuid {uuid}) "
            f"and create it again: {recreate}.",
        )
    else:
        checks.add("event source", True, f"mapping {uuid} is disabled at TRIM_HORIZON")


def _check_target(checks: _Checks, settings: FullLoadSettings, clients: FullLoadClients) -> None:
    target = settings.target
    try:
        clients.target.client("dynamodb").describe_table(TableName=target.table)
    except ClientError as exc:
        code = error_code(exc)
        if code == "ResourceNotFoundException":
            checks.add("target table", True, f"{target.table} does not exist yet in {target.region}")
        elif is_credential_error(exc) or code in ("AccessDeniedException", "UnrecognizedClientException"):
            checks.add(
                "target access",
                False,
                f"Cannot reach the target account in {target.region} ({code}): "
                "check TARGET_ROLE_ARN / TARGET_EXTERNAL_ID (or the peer credentials) and the role's policy.",
            )
        else:
            raise
    except PermanentError as exc:  # unreadable peer keys
        checks.add("peer credentials", False, f"{exc} (needed to reach {target.region}).")
    else:
        checks.add(
            "target table",
            False,
            f"Target table {target.table} already exists in {target.region}: "
            "ImportTable creates the table itself. Delete it (once you are sure it holds nothing you need), "
            "or load into the existing table with the backfill workflow.",
        )
    _check_buckets(checks, settings, clients)


def _check_buckets(checks: _Checks, settings: FullLoadSettings, clients: FullLoadClients) -> None:
    """The export bucket, seen as the import will read it; across partitions, the peer bucket too."""
    bucket = settings.export_bucket
    owner = settings.export_bucket_owner
    try:
        reader = clients.target.client("s3") if owner and not settings.cross_partition else clients.s3
        reader.head_bucket(Bucket=bucket)
        checks.add("export bucket", True, f"{bucket} is reachable")
    except ClientError as exc:
        whose = f"account {owner}" if owner else "this account"
        checks.add(
            "export bucket",
            False,
            f"The export bucket {bucket} ({whose}) is not reachable "
            f"({error_code(exc)}): create it, let this account's full-load role write under "
            f"{settings.export_prefix}/ (s3:PutObject, s3:AbortMultipartUpload, s3:PutObjectAcl) and the "
            "importing side read it (s3:GetObject, s3:ListBucket).",
        )
    except PermanentError:
        pass  # unreadable peer keys: reported with the target checks
    if settings.cross_partition and settings.peer_bucket:
        try:
            clients.target.client("s3").head_bucket(Bucket=settings.peer_bucket)
            checks.add("peer bucket", True, f"{settings.peer_bucket} is reachable")
        except ClientError as exc:
            checks.add(
                "peer bucket",
                False,
                f"The peer bucket {settings.peer_bucket} is not reachable with the "
                f"peer credentials ({error_code(exc)}): create it in {settings.target.region} and allow "
                "s3:PutObject, s3:GetObject and s3:ListBucket to the peer keys.",
            )
        except PermanentError:
            pass  # already reported as unreadable peer credentials


_GSI_FIELDS = ("IndexName", "KeySchema", "Projection")


def table_creation(desc: Json, target_table: str) -> Json:
    """ImportTable's TableCreationParameters: keys, attributes, GSIs and billing copied from DescribeTable."""
    billing = (desc.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
    used = {k["AttributeName"] for k in desc["KeySchema"]}
    params: Json = {"TableName": target_table, "KeySchema": desc["KeySchema"], "BillingMode": billing}

    def throughput(source: Json) -> Json:
        extra: Json = {}
        if billing == "PROVISIONED":
            pt = source.get("ProvisionedThroughput") or {}
            extra["ProvisionedThroughput"] = {
                "ReadCapacityUnits": max(1, int(pt.get("ReadCapacityUnits") or 1)),
                "WriteCapacityUnits": max(1, int(pt.get("WriteCapacityUnits") or 1)),
            }
        elif source.get("OnDemandThroughput"):
            extra["OnDemandThroughput"] = source["OnDemandThroughput"]
        return extra

    params.update(throughput(desc))
    gsis = []
    for index in desc.get("GlobalSecondaryIndexes") or []:
        gsi = {k: index[k] for k in _GSI_FIELDS}
        gsi.update(throughput(index))
        used.update(k["AttributeName"] for k in index["KeySchema"])
        gsis.append(gsi)
    if gsis:
        params["GlobalSecondaryIndexes"] = gsis
    params["AttributeDefinitions"] = [a for a in desc["AttributeDefinitions"] if a["AttributeName"] in used]
    return params


# ---- retention guard ---------------------------------------------------------------------------------------
def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def retention(plan_: Json, export_time_ms: int, now_ms: int, max_record_age: int | None = None) -> Json:
    """Whether live replication can still start before a change made after the export point expires.

    The stream keeps a record 24 h (or the mapping's MaximumRecordAgeInSeconds, when shorter); the
    handover must happen before that, minus the safety margin that replication needs to catch up.
    """
    limit = STREAM_RETENTION_SECONDS if not max_record_age else min(STREAM_RETENTION_SECONDS, max_record_age)
    deadline = export_time_ms + (limit - int(plan_["safetySeconds"])) * 1000
    left_minutes = (deadline - now_ms) // 60000
    verdict: Json = {"ok": now_ms < deadline, "handoverDeadline": _iso(deadline), "minutesLeft": int(left_minutes)}
    if not verdict["ok"]:
        verdict["message"] = (
            f"Stopped before any change could be lost: live replication had to start by {_iso(deadline)} "
            f"(the export point {_iso(export_time_ms)} plus the stream's {limit // 3600} h retention minus "
            f"{int(plan_['safetySeconds']) // 60} min to catch up), and it is now {_iso(now_ms)}. Replication was "
            "NOT enabled and no change has expired yet. Options: (1) rerun the full load: delete the target table "
            f"{plan_['targetTable']} in {plan_['targetRegion']} (the import may still be creating it) and start a "
            "new execution, once the import can finish sooner (fewer or smaller items, a quieter time); "
            "(2) buffer the changes where they live longer: stream the source table to Kinesis Data Streams "
            "(retention up to 365 days) before the export and replicate from there; (3) create the target "
            "table yourself, enable live replication first and copy the existing items with the backfill "
            "workflow, which has no retention limit."
        )
        metrics.add_metric(name="FullLoadRetentionStops", unit=MetricUnit.Count, value=1)
    return verdict


def _guard(plan_: Json, export_time_ms: int, now_ms: int, pre: Json) -> Json:
    """The retention verdict; raises RetentionExceeded (the workflow stops) when it is too late."""
    verdict = retention(plan_, export_time_ms, now_ms, pre.get("maxRecordAgeSeconds"))
    if not verdict["ok"]:
        raise RetentionExceeded(verdict["message"])
    return verdict


# ---- export ------------------------------------------------------------------------------------------------
def start_export(plan_: Json, pre: Json, clients: FullLoadClients) -> Json:
    """ExportTableToPointInTime at now (T), idempotent under retries through the client token."""
    kwargs: Json = {
        "TableArn": pre["sourceTableArn"],
        "S3Bucket": plan_["exportBucket"],
        "S3Prefix": plan_["exportPrefix"],
        "ExportFormat": "DYNAMODB_JSON",
        "ExportType": "FULL_EXPORT",
        "ClientToken": plan_["clientToken"],
    }
    if plan_.get("exportBucketOwner"):
        kwargs["S3BucketOwner"] = plan_["exportBucketOwner"]
    requested = clients.now_ms()
    desc = clients.dynamodb.export_table_to_point_in_time(**kwargs)["ExportDescription"]
    logger.info("export started", extra={"exportArn": desc["ExportArn"], "prefix": plan_["exportPrefix"]})
    return {
        "exportArn": desc["ExportArn"],
        "status": "IN_PROGRESS",
        "requestedAt": requested,
        "deadline": requested + int(plan_["exportTimeoutSeconds"]) * 1000,
    }


def _ms(value: Any) -> int | None:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, (int, float)):
        return int(value * 1000)
    return None


def describe_export(plan_: Json, pre: Json, export: Json, clients: FullLoadClients) -> Json:
    """Where the export stands: IN_PROGRESS, COMPLETED, FAILED or TIMED_OUT, with its point in time."""
    desc = clients.dynamodb.describe_export(ExportArn=export["exportArn"])["ExportDescription"]
    now = clients.now_ms()
    status = desc["ExportStatus"]
    # The export point T: ExportTime when DescribeExport gives it, else when it was requested (the default).
    export_time = _ms(desc.get("ExportTime")) or int(export["requestedAt"])
    started = _ms(desc.get("StartTime")) or int(export["requestedAt"])
    ended = _ms(desc.get("EndTime")) or now
    out = {
        **export,
        "status": status,
        "exportTime": export_time,
        "exportTimeIso": _iso(export_time),
        "itemCount": int(desc.get("ItemCount") or 0),
        "seconds": round((ended - started) / 1000, 1),
    }
    out["retention"] = _guard(plan_, export_time, now, pre)
    if status == "FAILED":
        out["message"] = (
            f"The export {export['exportArn']} failed: {desc.get('FailureCode')}: "
            f"{desc.get('FailureMessage')}. Check the bucket {plan_['exportBucket']} (it must exist "
            "and let this account write under the prefix), then start a new execution."
        )
    elif status == "IN_PROGRESS" and now > int(export["deadline"]):
        out["status"] = "TIMED_OUT"
        out["message"] = (
            f"The export {export['exportArn']} did not finish within "
            f"{int(plan_['exportTimeoutSeconds']) // 60} min (exportTimeoutMinutes). It may still "
            "complete; start a new execution with a larger exportTimeoutMinutes."
        )
    if status == "COMPLETED":
        metrics.add_metric(name="FullLoadExportedItems", unit=MetricUnit.Count, value=out["itemCount"])
    return out


def export_folder(s3: Any, bucket: str, prefix: str, export_arn: str) -> str:
    """The export's folder `<prefix>/AWSDynamoDB/<export id>/` (found by listing: one export per prefix)."""
    page = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/AWSDynamoDB/", Delimiter="/")
    folders = [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    export_id = export_arn.rsplit("/", 1)[-1]
    named = [f for f in folders if f.rstrip("/").endswith(export_id)]
    if named:
        return named[0]
    if len(folders) == 1:
        return folders[0]
    raise PermanentError(
        "ExportFilesNotFound",
        f"expected the files of export {export_arn} under "
        f"s3://{bucket}/{prefix}/AWSDynamoDB/, found {len(folders)} export folders",
    )


# ---- cross-partition copy ----------------------------------------------------------------------------------
def copy_export(
    plan_: Json, pre: Json, export: Json, state: Json, clients: FullLoadClients, budget_seconds: float
) -> Json:
    """Copy the export's files to the peer partition's bucket, as many as fit in the time budget.

    The state carries `startAfter` (the last key copied), so the next call resumes there.
    """
    started = time.monotonic()
    bucket, peer_bucket = plan_["exportBucket"], plan_["peerBucket"]
    folder = state.get("folder") or export_folder(clients.s3, bucket, plan_["exportPrefix"], export["exportArn"])
    peer = clients.target.client("s3")
    start_after = str(state.get("startAfter") or "")
    objects, copied_bytes, done = int(state.get("objects", 0)), int(state.get("bytes", 0)), False
    while not done:  # at least one file per call, however short the budget
        page = clients.s3.list_objects_v2(Bucket=bucket, Prefix=folder, StartAfter=start_after)
        contents = page.get("Contents", [])
        for obj in contents:
            body = clients.s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"]
            peer.upload_fileobj(body, peer_bucket, obj["Key"])  # streamed, multipart when large
            size = int(peer.head_object(Bucket=peer_bucket, Key=obj["Key"])["ContentLength"])
            if size != int(obj["Size"]):
                raise RetryableError("CopyIncomplete", f"{obj['Key']}: copied {size} of {obj['Size']} bytes")
            objects, copied_bytes, start_after = objects + 1, copied_bytes + size, obj["Key"]
            if time.monotonic() - started >= budget_seconds:
                break
        done = not page.get("IsTruncated") and (not contents or start_after == contents[-1]["Key"])
        if time.monotonic() - started >= budget_seconds:
            break
    out: Json = {"folder": folder, "startAfter": start_after, "objects": objects, "bytes": copied_bytes, "done": done}
    out["retention"] = _guard(plan_, int(export["exportTime"]), clients.now_ms(), pre)
    logger.info("export files copied", extra={"objects": objects, "bytes": copied_bytes, "done": done})
    return out


# ---- import ------------------------------------------------------------------------------------------------
def _import_source(plan_: Json, clients: FullLoadClients) -> tuple[str, str | None, Any]:
    """The bucket the import reads, its owner, and a client that can list it."""
    if plan_["crossPartition"]:
        return plan_["peerBucket"], None, clients.target.client("s3")
    owner = plan_.get("exportBucketOwner")
    # A bucket owned by another account (normally the target's) is listed as the import will read it.
    return plan_["exportBucket"], owner, clients.target.client("s3") if owner else clients.s3


def start_import(plan_: Json, pre: Json, export: Json, clients: FullLoadClients) -> Json:
    """ImportTable in the target account and region, from the export's data files."""
    bucket, owner, s3 = _import_source(plan_, clients)
    folder = export_folder(s3, bucket, plan_["exportPrefix"], export["exportArn"])
    source: Json = {"S3Bucket": bucket, "S3KeyPrefix": f"{folder}data/"}
    if owner:
        source["S3BucketOwner"] = owner
    started = clients.now_ms()
    desc = clients.target.client("dynamodb").import_table(
        S3BucketSource=source,
        InputFormat="DYNAMODB_JSON",
        InputCompressionType="GZIP",
        TableCreationParameters=pre["tableCreation"],
        ClientToken=plan_["clientToken"],
    )["ImportTableDescription"]
    logger.info("import started", extra={"importArn": desc["ImportArn"], "source": source})
    return {
        "importArn": desc["ImportArn"],
        "status": "IN_PROGRESS",
        "startedAt": started,
        "source": source,
        "deadline": started + int(plan_["importTimeoutSeconds"]) * 1000,
    }


def describe_import(plan_: Json, pre: Json, export: Json, imp: Json, clients: FullLoadClients) -> Json:
    """Where the import stands (IN_PROGRESS, COMPLETED, FAILED, CANCELLED or TIMED_OUT), with its counts."""
    desc = clients.target.client("dynamodb").describe_import(ImportArn=imp["importArn"])["ImportTableDescription"]
    now = clients.now_ms()
    status = desc["ImportStatus"]
    started = _ms(desc.get("StartTime")) or int(imp["startedAt"])
    ended = _ms(desc.get("EndTime")) or now
    out = {
        **imp,
        "status": status,
        "importedItems": int(desc.get("ImportedItemCount") or 0),
        "processedItems": int(desc.get("ProcessedItemCount") or 0),
        "errorCount": int(desc.get("ErrorCount") or 0),
        "seconds": round((ended - started) / 1000, 1),
    }
    out["retention"] = _guard(plan_, int(export["exportTime"]), now, pre)
    if status in ("FAILED", "CANCELLED", "CANCELLING"):
        out["status"] = "FAILED"
        out["message"] = (
            f"The import {imp['importArn']} {status.lower()}: {desc.get('FailureCode')}: "
            f"{desc.get('FailureMessage')} ({out['errorCount']} item errors; see the CloudWatch log "
            f"group /aws-dynamodb/imports in {plan_['targetRegion']}). Delete the table "
            f"{plan_['targetTable']} if it was created, then start a new execution."
        )
    elif status == "IN_PROGRESS" and now > int(imp["deadline"]):
        out["status"] = "TIMED_OUT"
        out["message"] = (
            f"The import {imp['importArn']} did not finish within "
            f"{int(plan_['importTimeoutSeconds']) // 60} min (importTimeoutMinutes). Replication was "
            "not enabled. Start a new execution with a larger importTimeoutMinutes once the table "
            f"{plan_['targetTable']} is deleted."
        )
    if status == "COMPLETED":
        metrics.add_metric(name="FullLoadImportedItems", unit=MetricUnit.Count, value=out["importedItems"])
    return out


# ---- handover ----------------------------------------------------------------------------------------------
def enable_replication(plan_: Json, pre: Json, export: Json, clients: FullLoadClients) -> Json:
    """Enable the replicator's event source, unless the stream retention no longer allows a gap-free start."""
    now = clients.now_ms()
    verdict = _guard(plan_, int(export["exportTime"]), now, pre)
    out: Json = {"uuid": pre["mappingUuid"], "retention": verdict}
    mapping = clients.lambda_.get_event_source_mapping(UUID=pre["mappingUuid"])
    if mapping.get("State") == "Disabled" and mapping.get("LastProcessingResult") not in NEVER_PROCESSED:
        raise PermanentError(
            "MappingChanged",
            f"the event source mapping {pre['mappingUuid']} processed records "
            "during the full load; its position is no longer TRIM_HORIZON",
        )
    state = clients.lambda_.update_event_source_mapping(UUID=pre["mappingUuid"], Enabled=True)["State"]
    lag_minutes = round((now - int(export["exportTime"])) / 60000, 1)
    out.update(
        {
            "state": state,
            "enabledAt": now,
            "enabledAtIso": _iso(now),
            "minutesAfterExport": lag_minutes,
            "deadline": now + ENABLE_TIMEOUT_SECONDS * 1000,
        }
    )
    metrics.add_metric(name="FullLoadHandoverMinutesToSpare", unit=MetricUnit.Count, value=verdict["minutesLeft"])
    logger.info("live replication enabled", extra={"uuid": pre["mappingUuid"], "state": state})
    return out


def describe_replication(replication: Json, clients: FullLoadClients) -> Json:
    """The event source's state after enabling (Enabling -> Enabled), TIMED_OUT past the deadline."""
    state = clients.lambda_.get_event_source_mapping(UUID=replication["uuid"])["State"]
    out = {**replication, "state": state}
    if state != "Enabled" and clients.now_ms() > int(replication["deadline"]):
        out["state"] = "TIMED_OUT"
        out["message"] = (
            f"The event source mapping {replication['uuid']} is still {state} "
            f"{ENABLE_TIMEOUT_SECONDS // 60} min after it was enabled: check it in the Lambda console "
            "(permissions on the stream, the function's state) and enable it by hand; the stream "
            "still holds the changes until the handover deadline."
        )
    return out


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
            return RetryableError(code, str(exc))
        return PermanentError(code, str(exc))
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
    try:
        return _step(action, event, settings, clients, budget_seconds)
    except Exception as exc:  # every error is classified for the state's Retry/Catch
        if is_credential_error(exc):
            clients.target.refresh()
        error = classify_step(exc)
        if error is exc:
            raise
        raise error from exc


# ---- the Lambda --------------------------------------------------------------------------------------------
COPY_BUDGET_MAX_SECONDS = 600.0
SAFETY_SECONDS = 60.0


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
    peer = PeerKeys(settings.peer) if settings.peer else None
    clients = FullLoadClients(
        dynamodb=boto3.client("dynamodb", region_name=settings.source_region, config=config),
        lambda_=boto3.client("lambda", region_name=settings.source_region, config=config),
        s3=boto3.client("s3", region_name=settings.source_region, config=config),
        target=TargetAccess(settings.target, peer),
    )
    return Runtime(settings, clients)


def handle(event: Json, context: Any) -> Json:
    """One workflow step; the copy step is bounded by the invocation's remaining time."""
    rt = runtime()
    budget = min(COPY_BUDGET_MAX_SECONDS, context.get_remaining_time_in_millis() / 1000 - SAFETY_SECONDS)
    logger.append_keys(action=event.get("action"), execution=(event.get("plan") or {}).get("execution"))
    return run_action(event, rt.settings, rt.clients, max(1.0, budget))
