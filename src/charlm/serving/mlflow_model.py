"""Models-from-code entry point: MLflow runs this file to build the pyfunc model (no pickle). Importing it
registers a CharLMModel with MLflow; nothing else imports it."""

import mlflow.models

from charlm.serving.pyfunc import CharLMModel

mlflow.models.set_model(CharLMModel())
