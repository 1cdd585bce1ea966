#!/usr/bin/env bash
# First start of the Postgres container: one database and one user for Airflow's metadata, one
# for the scoring tables, and the read-only role `analyst` (the scoring migrations grant it SELECT).
set -euo pipefail
: "${AIRFLOW_DB_PASSWORD:?set AIRFLOW_DB_PASSWORD in .env}"
: "${CLIENT_SCORING_DB_PASSWORD:?set CLIENT_SCORING_DB_PASSWORD in .env}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v airflow_pw="$AIRFLOW_DB_PASSWORD" -v scoring_pw="$CLIENT_SCORING_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_pw';
CREATE DATABASE airflow OWNER airflow;
CREATE ROLE client_scoring LOGIN PASSWORD :'scoring_pw';
CREATE DATABASE client_scoring OWNER client_scoring;
-- Roles belong to the whole server: the analyst role may exist already (another database's migrations).
SELECT 'CREATE ROLE analyst NOLOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'analyst')
\gexec
ALTER ROLE analyst SET default_transaction_read_only = on;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
REVOKE ALL ON DATABASE client_scoring FROM PUBLIC;
GRANT CONNECT ON DATABASE client_scoring TO analyst;
SQL
