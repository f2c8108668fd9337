"""Everything that must hold before the export, each failure with how to fix it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ...core.capacity import describe_table
from ...core.errors import PermanentError, RetryableError, error_code, is_credential_error
from ...core.observability import MetricUnit, metrics
from ..settings import FullLoadSettings
from .clients import FullLoadClients, Json
from .retention import STREAM_RETENTION_SECONDS

NEVER_PROCESSED = (None, "", "No records processed")


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
    desc = describe_table(clients.dynamodb, table)
    if desc is None:
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


def _peer_keys_unusable(exc: Exception) -> bool:
    """The error says the peer keys cannot be read or used (a check to fail, not a step to retry)."""
    return isinstance(exc, PermanentError) or (
        isinstance(exc, RetryableError) and exc.reason in ("PeerKeysMalformed", "PeerKeysUnreadable")
    )


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
    except (PermanentError, RetryableError) as exc:  # unreadable or malformed peer keys
        if not _peer_keys_unusable(exc):
            raise
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
    except (PermanentError, RetryableError) as exc:
        if not _peer_keys_unusable(exc):
            raise  # unreadable peer keys: reported with the target checks
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
        except (PermanentError, RetryableError) as exc:
            if not _peer_keys_unusable(exc):
                raise  # already reported as unreadable peer credentials


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
