"""The relay's side of the border: the peer region's Kinesis stream, its keys, and PutRecords with retries.

Cross-partition peers (aws <-> aws-cn) cannot be reached with a role, so the peer's access keys are
read from Secrets Manager or an SSM SecureString (`target_access.PeerKeys`, Powertools parameters with
a cache): a rotated key is picked up when the cache expires, and at once after an authentication
failure, without a redeploy. PutRecords is sent in calls of at most 500 records and 5 MiB; only the
records that failed are sent again, with exponential backoff and full jitter. That reorders them,
which is fine: appliers decide by version, never by arrival order (docs/design.md#delivery-is-hostile).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ..core.access import PeerKeys
from ..core.clients import static_key_session
from ..core.errors import PermanentError, RetryableError, classify, is_credential_error
from .packs import MAX_RECORD_BYTES, OutRecord, calls

ClientFactory = Callable[[boto3.Session, str, Config], Any]


def default_client_factory(session: boto3.Session, region: str, config: Config) -> Any:
    """A Kinesis client of the peer region on the given session."""
    return session.client("kinesis", region_name=region, config=config)


@dataclass
class PutOutcome:
    """What one `PeerStream.put` did, by record index."""

    sent: set[int] = field(default_factory=set)
    failed: dict[int, RetryableError] = field(default_factory=dict)
    rejected: dict[int, PermanentError] = field(default_factory=dict)
    calls: int = 0
    retried_records: int = 0
    bytes_sent: int = 0
    credential_refreshes: int = 0


class PeerStream:
    """The peer's Kinesis stream, reached with the peer's keys (or this function's own credentials)."""

    def __init__(
        self,
        *,
        region: str,
        stream: str,
        keys: PeerKeys | None,
        config: Config,
        client_factory: ClientFactory = default_client_factory,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.region = region
        self.stream = stream
        self.keys = keys
        self.config = config
        self.client_factory = client_factory  # tests wrap the client (faults, revoked keys)
        self.sleep = sleep
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        self._client: Any = None
        self._key_id: str | None = None

    def client(self) -> Any:
        """The current client; a new one when the keys changed (rotation) or after `refresh()`."""
        with self._lock:
            if self.keys is not None:
                keys = self.keys.read()
                if self._client is None or keys["accessKeyId"] != self._key_id:
                    session = static_key_session(
                        keys["accessKeyId"], keys["secretAccessKey"], self.region, keys.get("sessionToken")
                    )
                    self._client = self.client_factory(session, self.region, self.config)
                    self._key_id = keys["accessKeyId"]
            elif self._client is None:
                self._client = self.client_factory(boto3.Session(region_name=self.region), self.region, self.config)
            return self._client

    def refresh(self) -> None:
        """Forget the client and re-read the keys now (after an authentication failure)."""
        with self._lock:
            self._client = None
            self._key_id = None
        if self.keys is not None:
            self.keys.read(force=True)

    def put(self, records: list[OutRecord], *, attempts: int) -> PutOutcome:
        """Put every record, retrying only failed ones; what still fails is reported, not raised."""
        outcome = PutOutcome()
        pending: list[int] = []
        for index, record in enumerate(records):
            if record.size > MAX_RECORD_BYTES:
                outcome.rejected[index] = PermanentError(
                    "RecordTooLarge", f"a single change packs to {record.size} bytes, over Kinesis's 1 MiB"
                )
            else:
                pending.append(index)
        refreshed = False
        last_error: RetryableError = RetryableError("PutRecordsFailed", "records still failing after every attempt")
        for attempt in range(attempts):
            if attempt:
                outcome.retried_records += len(pending)
                self.sleep(self.rng.uniform(0, min(2.0, 0.05 * 2**attempt)))
            retry: list[int] = []
            groups = [[pending[j] for j in group] for group in calls([records[i] for i in pending])]
            while groups:
                indices = groups.pop(0)
                try:
                    response = self.client().put_records(
                        StreamName=self.stream, Records=[records[i].entry() for i in indices]
                    )
                except Exception as exc:  # noqa: BLE001 - classified below
                    error = classify(exc)
                    if isinstance(exc, ClientError) and is_credential_error(exc):
                        if not refreshed:
                            refreshed = True
                            outcome.credential_refreshes += 1
                            try:
                                self.refresh()
                            except Exception as read_error:  # noqa: BLE001 - the retry reports it
                                error = classify(read_error)
                        error = error if isinstance(error, RetryableError) else RetryableError(error.reason, str(error))
                    if isinstance(error, PermanentError) and len(indices) > 1:
                        # The call was refused as a whole: halve it, so only the record at fault is refused.
                        half = len(indices) // 2
                        groups[:0] = [indices[:half], indices[half:]]
                    elif isinstance(error, PermanentError):
                        outcome.rejected.update(dict.fromkeys(indices, error))
                    else:
                        last_error = error
                        retry.extend(indices)
                    continue
                outcome.calls += 1
                for index, entry in zip(indices, response["Records"], strict=True):
                    if entry.get("ErrorCode"):
                        last_error = RetryableError(entry["ErrorCode"], entry.get("ErrorMessage", ""))
                        retry.append(index)
                    else:
                        outcome.sent.add(index)
                        outcome.bytes_sent += records[index].size
            pending = retry
            if not pending:
                break
        outcome.failed = dict.fromkeys(pending, last_error)
        return outcome
