-- This database's folder in the model store. Several databases may share one store (one
-- CLIENT_SCORING_HOME for staging and production, a benchmark's sizes): each registry writes its
-- artifacts under its own key and sweeps only its own folder, so no registry removes another's
-- files. Artifacts registered before this migration keep their place (the registry still reads
-- them by the name it gave them then).
CREATE TABLE model_store_key (
    key      text PRIMARY KEY CHECK (key ~ '^[A-Za-z0-9_-]{1,80}$'),
    one_row  boolean NOT NULL DEFAULT true UNIQUE CHECK (one_row)
);
INSERT INTO model_store_key (key)
SELECT left(regexp_replace(current_database(), '[^A-Za-z0-9_-]', '_', 'g'), 60) || '-'
       || left(md5(gen_random_uuid()::text), 10);
