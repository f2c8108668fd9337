"""The export at time T (ExportTableToPointInTime), and its copy to the peer partition's bucket (s3.copy's copier)."""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime
from typing import Any

from ...core.errors import PermanentError, RetryableError
from ...core.observability import MetricUnit, logger, metrics
from ...s3.checksums import ObjectHead, same_content
from ...s3.copy import ObjectCopier
from ...s3.settings import MIB, CopyOptions
from .clients import FullLoadClients, Json
from .retention import _guard, _iso


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
COPY_WORKERS = 4  # files copied at once; each streams its parts two at a time (peak ~ 4 x 2 x 16 MiB)
COPY_OPTIONS = CopyOptions(server_side=False, part_size=16 * MIB, inline_max=1 << 62, copy_tags=False, concurrency=2)


def _copy_file(copier: ObjectCopier, obj: Json) -> int:
    """One export file through the bucket replicator's copier (skipped when the peer already has it)."""
    source = ObjectHead(size=int(obj["Size"]), etag=str(obj["ETag"]).strip('"'))
    there = copier.head_target(obj["Key"])
    if there is None or not same_content(source, there):
        copier.copy(obj["Key"], obj["Key"], source)
        there = copier.head_target(obj["Key"])
    size = there.size if there else 0
    if size != int(obj["Size"]):
        raise RetryableError("CopyIncomplete", f"{obj['Key']}: copied {size} of {obj['Size']} bytes")
    return size


def copy_export(
    plan_: Json, pre: Json, export: Json, state: Json, clients: FullLoadClients, budget_seconds: float
) -> Json:
    """Copy the export's files to the peer partition's bucket, several at once, as many as fit in the time budget.

    Files are started in key order while the budget lasts (at least one per call) and all started ones
    finish; the state carries `startAfter` (the last key copied), so the next call resumes there, and a
    file already in the peer bucket with the same content is not copied again.
    """
    started = time.monotonic()
    bucket, peer_bucket = plan_["exportBucket"], plan_["peerBucket"]
    folder = state.get("folder") or export_folder(clients.s3, bucket, plan_["exportPrefix"], export["exportArn"])
    peer = clients.target.client("s3", pool=COPY_WORKERS * COPY_OPTIONS.concurrency + 2)
    copier = ObjectCopier(clients.s3, peer, bucket, peer_bucket, COPY_OPTIONS)
    start_after = str(state.get("startAfter") or "")
    objects, copied_bytes, done = int(state.get("objects", 0)), int(state.get("bytes", 0)), False
    with ThreadPoolExecutor(max_workers=COPY_WORKERS) as pool:
        while not done:
            page = clients.s3.list_objects_v2(Bucket=bucket, Prefix=folder, StartAfter=start_after)
            contents = page.get("Contents", [])
            running: list[tuple[str, Future[int]]] = []
            for obj in contents:
                if running and time.monotonic() - started >= budget_seconds:
                    break
                while len([f for _, f in running if not f.done()]) >= COPY_WORKERS:
                    wait([f for _, f in running if not f.done()], return_when=FIRST_COMPLETED)
                running.append((obj["Key"], pool.submit(_copy_file, copier, obj)))
            for key, future in running:  # in key order: the checkpoint only passes files that are copied
                copied_bytes += future.result()
                objects, start_after = objects + 1, key
            done = not page.get("IsTruncated") and (not contents or start_after == contents[-1]["Key"])
            if time.monotonic() - started >= budget_seconds:
                break
    out: Json = {"folder": folder, "startAfter": start_after, "objects": objects, "bytes": copied_bytes, "done": done}
    out["retention"] = _guard(plan_, int(export["exportTime"]), clients.now_ms(), pre)
    logger.info("export files copied", extra={"objects": objects, "bytes": copied_bytes, "done": done})
    return out
