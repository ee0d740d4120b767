-- Keyset pagination for every supported order (each index also serves the reverse order),
-- and the completed filter on the default order.
CREATE INDEX tasks_owner_update ON tasks (owner_id, update_time, id);
CREATE INDEX tasks_owner_title ON tasks (owner_id, title, id);
CREATE INDEX tasks_owner_completed_create ON tasks (owner_id, completed, create_time, id);

-- Per-owner totals, kept in the same transaction as every write, so that `total_size` costs
-- one row read however many tasks there are.
CREATE TABLE task_counts (
    owner_id  TEXT    PRIMARY KEY NOT NULL,
    total     INTEGER NOT NULL,
    completed INTEGER NOT NULL
);

-- Request ids of creates (AIP-155): a retried create returns the task of the first attempt.
CREATE TABLE create_requests (
    owner_id    TEXT    NOT NULL,
    request_id  TEXT    NOT NULL,
    task_id     TEXT    NOT NULL,
    create_time INTEGER NOT NULL,
    PRIMARY KEY (owner_id, request_id)
);
CREATE INDEX create_requests_time ON create_requests (create_time);
