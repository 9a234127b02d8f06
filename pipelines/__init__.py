"""sagepipe: declarative ML pipelines that run locally and compile to SageMaker Pipelines."""

__version__ = "0.1.0"
