"""The schema, installed as the package ``mlcore.sql`` (pyproject.toml): migrations, views, example queries."""
