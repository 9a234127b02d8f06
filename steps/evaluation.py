"""`type: evaluation` — a processing step whose metrics report drives conditions and registration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import model_validator

from pipelines.errors import StepFailed
from pipelines.spec import RelativePath, Strict
from pipelines.step_api import CompileContext, LocalResult, StepContext
from steps.base import MODEL_IMAGE
from steps.processing import ProcessingStep


class Report(Strict):
    """Where the metrics report lies: a JSON file inside one of the step's outputs."""

    output: str = "evaluation"
    path: RelativePath = "evaluation.json"


class EvaluationStep(ProcessingStep):
    """SageMaker ProcessingStep with a PropertyFile; `${steps.<name>.metrics.<key>}` reads the report."""

    type: Literal["evaluation"] = "evaluation"  # type: ignore[assignment]
    default_image: ClassVar[dict[str, str]] = MODEL_IMAGE  # it loads what training made, with training's libraries
    report: Report = Report()

    @model_validator(mode="after")
    def _report_is_an_output(self) -> "EvaluationStep":
        if self.report.output not in self.outputs:
            raise ValueError(
                f"report.output '{self.report.output}' is not one of this step's outputs "
                f"({', '.join(self.outputs) or 'none'}); add it under outputs"
            )
        return self

    def has_metrics(self) -> bool:
        return True

    def run_local(self, ctx: StepContext) -> LocalResult:
        result = super().run_local(ctx)
        result.metrics = read_report(result.outputs[self.report.output] / self.report.path, self.report.path)
        return result

    def compile_sagemaker(self, cc: CompileContext, property_files: list[Any] | None = None) -> Any:
        """A ProcessingStep declaring its report as a PropertyFile, which conditions read with JsonGet."""
        from sagemaker.core.workflow.properties import PropertyFile

        report = PropertyFile(name=f"{self.name}-report", output_name=self.report.output, path=self.report.path)
        cc.property_files[self.name] = report
        return super().compile_sagemaker(cc, [report])


def read_report(path: Path, shown: str) -> dict:
    """Load a metrics report, failing the step clearly when it is missing or not a JSON object."""
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise StepFailed(f"the script wrote no metrics report {shown}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StepFailed(f"metrics report {shown} is not valid JSON: {exc}") from None
    if not isinstance(report, dict):
        raise StepFailed(f"metrics report {shown} must hold a JSON object")
    return report
