"""The bidirectional / cross-partition relay: stream_relay, packs on Kinesis, relay_applier, echo markers."""
