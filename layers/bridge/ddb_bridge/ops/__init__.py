"""Operator commands: replay parked records, resync keys from the source."""
