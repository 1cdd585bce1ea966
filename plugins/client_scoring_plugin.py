"""The client-scoring Airflow plugin: the Model Health view in the Airflow UI's navigation."""
from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from client_scoring.model_health import app as model_health_app


class ClientScoringPlugin(AirflowPlugin):
    """Mounts the Model Health app at ``/model-health`` and links it from the navigation bar."""

    name = "client_scoring"
    fastapi_apps = [{"app": model_health_app, "url_prefix": "/model-health", "name": "Model Health"}]
    external_views = [{
        "name": "Model Health",
        "href": "model-health/",
        "url_route": "model-health",
        "destination": "nav",
        "category": "browse",
    }]
