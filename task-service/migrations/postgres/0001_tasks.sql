-- Tasks. Ids are UUIDv7 strings; times are microseconds since the Unix epoch (UTC). The owner
-- is the user id taken from a verified access token; users live in the auth service's own
-- database, so there is no foreign key.
CREATE TABLE tasks (
    id          TEXT    PRIMARY KEY,
    owner_id    TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    completed   BOOLEAN NOT NULL DEFAULT FALSE,
    create_time BIGINT  NOT NULL,
    update_time BIGINT  NOT NULL,
    version     BIGINT  NOT NULL DEFAULT 1    -- bumped on every change; the etag derives from it
);

-- The default listing: one owner's tasks, newest first, id as the tie-break (keyset pages).
CREATE INDEX tasks_owner_create ON tasks (owner_id, create_time DESC, id DESC);
