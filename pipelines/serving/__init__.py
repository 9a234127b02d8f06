"""The local endpoint: SageMaker's inference protocol over HTTP, and batch transform."""
