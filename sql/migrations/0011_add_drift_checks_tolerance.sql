-- The tolerance a check was decided with, so the breach threshold (baseline - tolerance) can be shown later.
ALTER TABLE drift_checks ADD COLUMN tolerance double precision;
