"""moto's server, plus the one SageMaker call this project needs that moto lacks: UpdateEndpoint.

The added call does what the service does once an update finishes: the endpoint serves the new
config's variants. Run as `python tests/moto_server.py -H 127.0.0.1 -p PORT`, like `moto_server`.
"""

from __future__ import annotations

import sys

from moto.core.responses import ActionResult
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.responses import SageMakerResponse
from moto.server import main


def update_endpoint(self: SageMakerResponse) -> ActionResult:
    backend = self.sagemaker_backend
    name, config_name = self._get_param("EndpointName"), self._get_param("EndpointConfigName")
    if name not in backend.endpoints:
        raise ValidationError(message=f"Could not find endpoint '{name}'.")
    config = backend.describe_endpoint_config(config_name)
    endpoint = backend.endpoints[name]
    endpoint.endpoint_config_name = config_name
    endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])
    endpoint.data_capture_config = config.get("DataCaptureConfig")
    return ActionResult({"EndpointArn": endpoint.arn})


SageMakerResponse.update_endpoint = update_endpoint

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
