"""Operator commands (`ddb-bridge`): status, verify, drain, the cut-over gate, replay, resync."""
