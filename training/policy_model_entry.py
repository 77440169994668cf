"""MLflow models-from-code entry point: the policy class is imported, never pickled."""

import mlflow

from training.policy_model import PolicyModel

mlflow.models.set_model(PolicyModel())
