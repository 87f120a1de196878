-- Usernames unique without regard to case or width: `username_key` is the name NFKC-normalised
-- and lower-cased, computed by the server (SQLite's lower() knows only ASCII). It starts NULL
-- and the server fills it at start; an old name whose key an older user already holds keeps
-- NULL (NULLs do not collide in a unique index) and still logs in by its exact spelling.
ALTER TABLE users ADD COLUMN username_key TEXT;
CREATE UNIQUE INDEX users_by_username_key ON users (username_key);

-- Who uploaded each file: a profile photo may only be one's own upload.
CREATE TABLE uploads (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url         TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMP NOT NULL
);
CREATE INDEX uploads_user ON uploads (user_id);

-- One row the readiness probe rewrites: a database that cannot write (full disk, read-only)
-- is not ready, even though it still answers reads.
CREATE TABLE readiness (
    id      INTEGER PRIMARY KEY,
    checks  BIGINT NOT NULL DEFAULT 0
);
INSERT INTO readiness (id, checks) VALUES (1, 0);
