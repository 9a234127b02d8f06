"""`sagepipe emulate`: execute a SageMaker pipeline definition (the JSON) here, with the service's semantics."""
