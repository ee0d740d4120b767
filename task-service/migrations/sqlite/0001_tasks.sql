-- Tasks. Ids are UUIDv7 strings; times are microseconds since the Unix epoch (UTC). The owner
-- is the user id taken from a verified access token; users live in the auth service's own
-- database, so there is no foreign key.
CREATE TABLE tasks (
    id          TEXT    PRIMARY KEY NOT NULL,
    owner_id    TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    completed   INTEGER NOT NULL DEFAULT 0,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL,
    version     INTEGER NOT NULL DEFAULT 1    -- bumped on every change; the etag derives from it
);

-- The default listing: one owner's tasks, newest first, id as the tie-break (keyset pages).
CREATE INDEX tasks_owner_create ON tasks (owner_id, create_time DESC, id DESC);
