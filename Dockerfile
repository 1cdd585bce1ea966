# client-scoring on the official Airflow image: mlcore, the DAGs and the plugins with pinned dependencies.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}

ARG AIRFLOW_VERSION
# NUMBA_CACHE_DIR: the compiled tree kernel (mlcore/forest.py) is cached in the writable state
# folder rather than beside the installed package (which may be read-only for the worker).
ENV CLIENT_SCORING_HOME=/opt/client-scoring/var \
    NUMBA_CACHE_DIR=/opt/client-scoring/var/numba-cache \
    PYTHONPATH=/opt/airflow/plugins

WORKDIR /opt/client-scoring
# The project's pinned dependencies (pyproject.toml) and the package itself; apache-airflow stays at
# the image's version so pip never swaps the core underneath the providers. sql/ is part of the build:
# the wheel carries it as the package mlcore.sql, which `mlcore db upgrade` applies.
COPY --chown=airflow:0 pyproject.toml README.md ./
COPY --chown=airflow:0 mlcore ./mlcore
COPY --chown=airflow:0 sql ./sql
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" .
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
USER root
RUN mkdir -p /opt/client-scoring/var/models /opt/client-scoring/var/inbox \
    && chown -R airflow:0 /opt/client-scoring/var
USER airflow
WORKDIR /opt/airflow
