-- Titles sort by code point, as on SQLite, whatever the database's locale.
ALTER TABLE tasks ALTER COLUMN title SET DATA TYPE TEXT COLLATE "C";

-- Keyset pagination for every supported order (each index also serves the reverse order),
-- and the completed filter on the default order.
CREATE INDEX tasks_owner_update ON tasks (owner_id, update_time, id);
CREATE INDEX tasks_owner_title ON tasks (owner_id, title, id);
CREATE INDEX tasks_owner_completed_create ON tasks (owner_id, completed, create_time, id);

-- Per-owner totals, kept in the same transaction as every write, so that `total_size` costs
-- one row read however many tasks there are.
CREATE TABLE task_counts (
    owner_id  TEXT   PRIMARY KEY,
    total     BIGINT NOT NULL,
    completed BIGINT NOT NULL
);

-- Request ids of creates (AIP-155): a retried create returns the task of the first attempt.
CREATE TABLE create_requests (
    owner_id    TEXT   NOT NULL,
    request_id  TEXT   NOT NULL,
    task_id     TEXT   NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (owner_id, request_id)
);
CREATE INDEX create_requests_time ON create_requests (create_time);

-- The change feed across instances: each write adds its event here and announces the id with
-- NOTIFY task_events in the same transaction; every instance's listener reads it back.
CREATE TABLE task_events (
    id          BIGSERIAL PRIMARY KEY,
    kind        SMALLINT  NOT NULL,            -- 1 created, 2 updated, 3 deleted
    owner_id    TEXT      NOT NULL,
    task_id     TEXT      NOT NULL,
    title       TEXT      NOT NULL,
    description TEXT      NOT NULL,
    completed   BOOLEAN   NOT NULL,
    create_time BIGINT    NOT NULL,
    update_time BIGINT    NOT NULL,
    version     BIGINT    NOT NULL,
    event_time  BIGINT    NOT NULL
);
CREATE INDEX task_events_time ON task_events (event_time);
