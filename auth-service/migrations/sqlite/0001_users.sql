-- Accounts. Ids are UUIDv7 strings; times are microseconds since the Unix epoch (UTC).
CREATE TABLE users (
    id            TEXT    PRIMARY KEY NOT NULL,
    email         TEXT    NOT NULL,            -- trimmed and lower-cased before storing
    display_name  TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,            -- Argon2id PHC string
    create_time   INTEGER NOT NULL,
    update_time   INTEGER NOT NULL
);

-- Emails are unique regardless of case: they are stored lower-cased.
CREATE UNIQUE INDEX users_email ON users (email);
