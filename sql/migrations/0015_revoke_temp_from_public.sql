-- PostgreSQL grants TEMPORARY on every database to PUBLIC: any role that can connect, the read-only
-- analyst included, could create temporary tables and functions (in pg_temp). The compose init
-- script revokes all of PUBLIC's rights on its database; this revokes TEMPORARY wherever the schema is installed. The
-- database owner (the platform itself) keeps it.
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END
$$;
