-- Refresh tokens, stored only as the SHA-256 of the secret. A family is one sign-in: every
-- refresh adds a token to it, and reusing a spent token revokes the whole family.
CREATE TABLE refresh_tokens (
    token_hash  TEXT   PRIMARY KEY,   -- hex SHA-256 of the token
    family_id   TEXT   NOT NULL,
    user_id     TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    create_time BIGINT NOT NULL,
    expire_time BIGINT NOT NULL,               -- absolute end of the family; refresh keeps it
    used_time   BIGINT,                        -- when exchanged by Refresh
    revoke_time BIGINT                         -- when its family was revoked
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- Ed25519 signing keys. The newest is the active one; older ones stay published until the
-- last token they signed has expired. The private key is the 32-byte seed, base64.
CREATE TABLE signing_keys (
    kid         TEXT   PRIMARY KEY,
    private_key TEXT   NOT NULL,
    public_key  TEXT   NOT NULL,               -- base64url, the JWK `x`
    create_time BIGINT NOT NULL
);

-- Failed logins per (normalised) email, known or not, for throttling.
CREATE TABLE login_failures (
    email             TEXT   PRIMARY KEY,
    failures          BIGINT NOT NULL,
    last_failure_time BIGINT NOT NULL
);
