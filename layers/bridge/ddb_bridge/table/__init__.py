"""Writing changes into a DynamoDB table, and the one-way table_replicator built on it."""
