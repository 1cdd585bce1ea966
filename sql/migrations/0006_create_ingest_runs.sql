-- One row per successful load of an input file, for auditing re-loads.
CREATE TABLE ingest_runs (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('notes', 'concepts', 'outcomes')),
    source        text NOT NULL,
    sha256        char(64) NOT NULL,
    rows_in_file  integer NOT NULL,
    rows_inserted integer NOT NULL,
    loaded_at     timestamptz NOT NULL DEFAULT now()
);
