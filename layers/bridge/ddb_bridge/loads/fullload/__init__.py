"""The full load (statemachine/full_load.asl.json): export at time T, import as a new table, hand over to CDC.

Each function below is one step the state machine calls through functions/full_load_control. The
steps return plain JSON that the workflow carries and shows in the console; expected failures (a bad
input, a failed pre-check, an export that failed, the stream retention about to run out) are verdicts
with a readable `message` that a Choice turns into a Fail state, while AWS errors raise
RetryableError / PermanentError for the state's Retry and Catch.

The handover is gap-free (docs/design.md#full-load-handover): the replicator's event source is created disabled at
TRIM_HORIZON before the export, so when it is enabled after the import it replays every change since
the oldest record in the stream, which is older than T as long as the handover happens within the
stream's 24 h retention. The retention guard stops the workflow *before* a record after T can expire.
"""
