"""Airflow-side wiring of client-scoring: connection lookup, shared DAG defaults, the alert notifier."""
