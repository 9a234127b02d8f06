"""The SageMaker backend: compile to a Pipeline definition (SDK v3) and drive it through the AWS API."""
