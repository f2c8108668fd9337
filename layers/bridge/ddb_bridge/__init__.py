"""ddb-bridge: shared replication logic for DynamoDB and S3 across accounts, regions and partitions."""

__version__ = "0.1.0"
