-- A read-only role for analysts: SELECT on every table and view of the schema, nothing else.
-- Roles belong to the whole server: another database (or the server's init script, run by an
-- administrator) may have created it already, and then this user needs no CREATEROLE.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'analyst') THEN
        CREATE ROLE analyst NOLOGIN;
        ALTER ROLE analyst SET default_transaction_read_only = on;
    END IF;
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;
GRANT USAGE ON SCHEMA public TO analyst;
REVOKE CREATE ON SCHEMA public FROM analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO analyst;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO analyst;
