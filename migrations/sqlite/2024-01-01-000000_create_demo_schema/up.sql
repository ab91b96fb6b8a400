-- Demo schema of a house-cleaning business (SQLite).
-- Same tables, columns, nullability, defaults and foreign keys as the
-- PostgreSQL flavour. Every id is INTEGER PRIMARY KEY AUTOINCREMENT so that
-- sqlite_sequence exists. Timestamps are TEXT in the form PostgreSQL renders
-- timestamptz to JSON in UTC; NUMERIC(10,2) is TEXT to keep "12.50" exact;
-- JSONB is TEXT holding valid JSON.

CREATE TABLE users (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    email      TEXT NOT NULL UNIQUE,
    full_name  TEXT NOT NULL,
    is_admin   BOOLEAN NOT NULL DEFAULT false,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'))
);

CREATE TABLE clients (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    name               TEXT NOT NULL,
    email              TEXT,
    phone              TEXT,
    notes              TEXT,
    vip                BOOLEAN NOT NULL DEFAULT false,
    account_manager_id BIGINT REFERENCES users (id),
    created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'))
);

CREATE INDEX clients_account_manager_id_idx ON clients (account_manager_id);

CREATE TABLE properties (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id   BIGINT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    address     TEXT NOT NULL,
    square_feet INTEGER CHECK (square_feet > 0),
    details     TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX properties_client_id_idx ON properties (client_id);

CREATE TABLE cleaning_jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    property_id   INTEGER NOT NULL REFERENCES properties (id),
    cleaner_id    BIGINT REFERENCES users (id),
    scheduled_for TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'scheduled'
                  CHECK (status IN ('scheduled', 'done', 'cancelled')),
    price         TEXT NOT NULL,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'))
);

CREATE INDEX cleaning_jobs_property_id_idx ON cleaning_jobs (property_id);
CREATE INDEX cleaning_jobs_cleaner_id_idx ON cleaning_jobs (cleaner_id);

CREATE TABLE payments (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id  BIGINT NOT NULL UNIQUE REFERENCES cleaning_jobs (id),
    amount  TEXT NOT NULL CHECK (CAST(amount AS REAL) >= 0),
    paid_at TEXT,
    method  TEXT NOT NULL CHECK (method IN ('card', 'cash', 'transfer'))
);
-- payments.job_id is indexed by its UNIQUE constraint.
