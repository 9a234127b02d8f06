"""`type: fail` — end the run as failed with a message (SageMaker FailStep)."""

from __future__ import annotations

from typing import Any, Literal

from pipelines.errors import StepFailed
from pipelines.step_api import CompileContext, LocalResult, Step, StepContext


class FailStep(Step):
    """Stops the pipeline; message may hold references, filled in when it runs."""

    type: Literal["fail"] = "fail"
    message: Any = "the pipeline reached a fail step"

    def run_local(self, ctx: StepContext) -> LocalResult:
        # the message as SageMaker's Join makes it (full precision); what is shown to people is rounded by explain.readable
        raise StepFailed(str(ctx.resolve(self.message)))

    def compile_sagemaker(self, cc: CompileContext) -> Any:
        """A FailStep; references in the message become a Join over parameters and report values (JsonGet)."""
        from sagemaker.mlops.workflow import FailStep as SdkFailStep

        return SdkFailStep(name=self.name, error_message=cc.text(self.message), description=self.description or None,
                           depends_on=cc.depends_on(self))

