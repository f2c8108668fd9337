"""S3 bucket replication: live bucket events, backfill of existing objects, bucket compare."""
