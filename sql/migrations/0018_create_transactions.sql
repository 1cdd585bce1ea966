-- Point-of-sale transactions (data contract: transactions): one row per purchase line or return.
-- amount is the line's value in the maison's currency: negative for a return (the contract allows
-- it), zero for a free item (still a purchase). A row is identified by all its values; give transaction_id to tell apart two
-- identical lines on the same day (the same item bought twice), which would otherwise be one row.
CREATE TABLE transactions (
    client_id      text COLLATE "C" NOT NULL CHECK (client_id <> ''),
    date           date NOT NULL,
    amount         double precision NOT NULL,
    transaction_id text COLLATE "C" CHECK (transaction_id <> ''),
    store          text,
    category       text,
    quantity       integer CHECK (quantity <> 0),
    loaded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX transactions_key_idx ON transactions (client_id, coalesce(transaction_id, ''), date, amount,
    coalesce(store, ''), coalesce(category, ''), coalesce(quantity, 0));
CREATE INDEX transactions_client_date_idx ON transactions (client_id, date);
CREATE INDEX transactions_date_idx ON transactions (date);
ALTER TABLE ingest_runs DROP CONSTRAINT ingest_runs_kind_check,
    ADD CONSTRAINT ingest_runs_kind_check CHECK (kind IN ('notes', 'concepts', 'outcomes', 'transactions'));
