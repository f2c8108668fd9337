"""Local AWS for tests, the demo and benchmarks: moto as an HTTP server, and Lambda's event sources."""
