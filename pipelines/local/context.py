"""What the local runner hands a step type when it runs one step (declared in pipelines/step_api.py; the services
it lends are built in pipelines/local/services.py)."""

from __future__ import annotations

from pipelines.step_api import LocalResult, StepContext, StepServices

__all__ = ["LocalResult", "StepContext", "StepServices"]
