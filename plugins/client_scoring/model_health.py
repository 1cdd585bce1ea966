"""The Model Health view: a FastAPI app mounted in Airflow's API server at ``/model-health``.

``GET /model-health/`` is the page (embedded in the Airflow UI through the plugin's external view);
``GET /model-health/api/health`` is the JSON it draws from (:func:`mlcore.health.model_health`).
Airflow does not authenticate plugin apps, so every route here requires a logged-in Airflow user:
the UI's session cookie or an ``Authorization: Bearer`` token, checked by Airflow's own auth manager.
"""
from __future__ import annotations

import asyncio
import functools
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse

PAGE = Path(__file__).with_name("model_health.html")


async def require_user(request: Request):
    """The logged-in Airflow user; 401 without credentials, 403 with an invalid token."""
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    return await get_user(request, None, await bearer_scheme(request))


@functools.cache
def _engine():
    from client_scoring.wiring import engine, server_connection_url, settings

    return engine(settings(server_connection_url))


app = FastAPI(title="client-scoring Model Health", dependencies=[Depends(require_user)],
              docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/", response_class=HTMLResponse)
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE.read_text(), headers={"Cache-Control": "no-store"})


@app.get("/api/health")
async def health(days: int = 120) -> dict:
    """The page's data: champions, live metrics per check, retrainings, score histograms, alerts."""
    import sqlalchemy as sa

    from mlcore.exceptions import ConfigError
    from mlcore.health import model_health

    if not 1 <= days <= 3660:
        raise HTTPException(422, f"days must be between 1 and 3660, got {days}.")
    try:
        return await asyncio.to_thread(model_health, _engine(), days)
    except ConfigError as exc:  # no scoring database is configured: say which settings, not a bare 500
        raise HTTPException(503, str(exc)) from None
    except sa.exc.OperationalError as exc:
        raise HTTPException(503, "the scoring database (connection client_scoring_db) is unreachable: "
                                 f"{str(exc.orig).strip().splitlines()[0]}") from None
