"""The embedded local backend: each step a subprocess that sees the SageMaker container contract."""
