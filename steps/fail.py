"""`type: fail` — end the run as failed with a message (SageMaker FailStep)."""

from __future__ import annotations

from typing import Any, Literal

from pipelines.errors import StepFailed
from pipelines.local.context import LocalResult, StepContext
from pipelines.spec import StepSpec


class FailStep(StepSpec):
    """Stops the pipeline; message may hold references, filled in when it runs."""

    type: Literal["fail"] = "fail"
    message: Any = "the pipeline reached a fail step"

    def run_local(self, ctx: StepContext, inputs: dict) -> LocalResult:
        raise StepFailed(str(ctx.resolve(self.message)))

    def compile_sagemaker(self, cc: Any) -> Any:
        """A FailStep; references in the message become a Join over parameters and report values (JsonGet)."""
        from sagemaker.mlops.workflow import FailStep as SdkFailStep

        return SdkFailStep(name=self.name, error_message=cc.text(self.message), description=self.description or None,
                           depends_on=cc.depends_on(self))
