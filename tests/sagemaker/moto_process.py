"""`python moto_process.py -H HOST -p PORT`: moto's server (as `python -m moto.server`), answering
ListPipelineExecutionSteps with no steps.

moto 5 has no ListPipelineExecutionSteps: it answers 500 (NotImplementedError), which sagepipe's AWS client
(adaptive retries, 10 attempts) retries with backoff for about 25 s before `sagepipe status` and `start --wait`
fall back to listing no steps. The step list of a moto execution is empty either way; answering it at once keeps
those 25 s out of every test that asks for an execution's status. An unknown execution is refused as
DescribePipelineExecution refuses it.
"""

from __future__ import annotations

import sys


def _list_pipeline_execution_steps(self):  # type: ignore[no-untyped-def]
    from moto.core.responses import ActionResult

    self.sagemaker_backend.describe_pipeline_execution(self._get_param("PipelineExecutionArn"))  # exists, or 400
    return ActionResult({"PipelineExecutionSteps": []})


def main() -> None:
    from moto.sagemaker.responses import SageMakerResponse
    from moto.server import main as serve

    if not hasattr(SageMakerResponse, "list_pipeline_execution_steps"):  # a moto that has it answers itself
        SageMakerResponse.list_pipeline_execution_steps = _list_pipeline_execution_steps
    serve(sys.argv[1:])


if __name__ == "__main__":
    main()
