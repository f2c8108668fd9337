"""ImportTable in the target account and region, from the export's data files."""

from __future__ import annotations

from typing import Any

from ...core.observability import MetricUnit, logger, metrics
from .clients import FullLoadClients, Json
from .export import _ms, export_folder
from .retention import _guard


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
