-- A read-only role for analysts: SELECT on every table and view of the schema, nothing else.
-- Roles belong to the whole server, so another database may have created it already.
DO $$
BEGIN
    CREATE ROLE analyst NOLOGIN;
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;
ALTER ROLE analyst SET default_transaction_read_only = on;
GRANT USAGE ON SCHEMA public TO analyst;
REVOKE CREATE ON SCHEMA public FROM analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO analyst;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO analyst;
