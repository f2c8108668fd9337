"""Verify (statemachine/verify.asl.json): is the target equal to the source, key for key, as writes go on.

Two passes over parallel-scan segments find candidates: the source's items looked up in the target
(missing, different), then the target's keys looked up in the source (extra). After a delay every
candidate is read again on both sides, consistently, and judged settled, in flight (a change on its
way) or real (`recheck`). With `repair`, the source's current state is written to the target through
the replicator's conditional writer, never over a newer write (`repair`). Checkpoints per phase, side
and segment make a stopped verify resume (`progress`); every differing key ends in one JSON-lines
report in S3 (`report`); the rate is a share of both tables' read capacity.
"""
