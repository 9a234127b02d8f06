"""Step types: one module each; adding a type is one module plus one line here."""

from __future__ import annotations

from steps.condition import ConditionStep
from steps.deploy import DeployStep
from steps.evaluation import EvaluationStep
from steps.fail import FailStep
from steps.processing import ProcessingStep
from steps.register import RegisterStep
from steps.training import TrainingStep
from steps.transform import TransformStep
from steps.tuning import TuningStep

STEP_TYPES = {
    "processing": ProcessingStep,
    "training": TrainingStep,
    "evaluation": EvaluationStep,
    "condition": ConditionStep,
    "register": RegisterStep,
    "deploy": DeployStep,
    "fail": FailStep,
    "tuning": TuningStep,
    "transform": TransformStep,
}
