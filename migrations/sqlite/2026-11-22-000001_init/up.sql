-- The whole schema of docs/protocol.md §3 for SQLite. Times are UTC, stored by diesel as text.
CREATE TABLE users (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    provider    TEXT NOT NULL DEFAULT 'local',
    username    TEXT NOT NULL UNIQUE,
    password    TEXT,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);

CREATE TABLE user_infos (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    nickname    TEXT NOT NULL,
    photo       TEXT NOT NULL,
    sign        TEXT,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);

CREATE TABLE github_identities (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    github_id   BIGINT NOT NULL UNIQUE,
    user_id     INTEGER NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    login       TEXT NOT NULL,
    created_at  TIMESTAMP NOT NULL
);

CREATE TABLE roles (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    key_name    TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);

CREATE TABLE rights (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    key_name    TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);

CREATE TABLE role_rights (
    role_id     INTEGER NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    right_id    INTEGER NOT NULL REFERENCES rights (id) ON DELETE CASCADE,
    PRIMARY KEY (role_id, right_id)
);
CREATE INDEX role_rights_right ON role_rights (right_id);

CREATE TABLE user_roles (
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id     INTEGER NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role_id)
);
CREATE INDEX user_roles_role ON user_roles (role_id);

CREATE TABLE conversations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    type        TEXT NOT NULL CHECK (type IN ('chat', 'groupchat')),
    active_time TIMESTAMP NOT NULL,
    active      BOOLEAN NOT NULL DEFAULT TRUE,
    last_seq    BIGINT NOT NULL DEFAULT 0,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);

CREATE TABLE "groups" (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL UNIQUE,
    photo           TEXT NOT NULL,
    introduction    TEXT,
    disabled        BOOLEAN NOT NULL DEFAULT FALSE,
    mute            BOOLEAN NOT NULL DEFAULT FALSE,
    owner_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    conversation_id INTEGER NOT NULL UNIQUE REFERENCES conversations (id),
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL
);
CREATE INDEX groups_owner ON "groups" (owner_id);

CREATE TABLE user_groups (
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    group_id    INTEGER NOT NULL REFERENCES "groups" (id) ON DELETE CASCADE,
    created_at  TIMESTAMP NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX user_groups_user ON user_groups (user_id);

CREATE TABLE friends (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    friend_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    conversation_id INTEGER NOT NULL UNIQUE REFERENCES conversations (id),
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL,
    CHECK (user_id < friend_id),
    UNIQUE (user_id, friend_id)
);
CREATE INDEX friends_friend ON friends (friend_id);

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    from_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    to_id           INTEGER NOT NULL,
    body            TEXT NOT NULL,
    client_msg_id   TEXT,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL,
    UNIQUE (conversation_id, seq)
);
CREATE INDEX messages_from ON messages (from_id);
CREATE UNIQUE INDEX messages_client_msg ON messages (from_id, client_msg_id) WHERE client_msg_id IS NOT NULL;

CREATE TABLE applies (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    type        TEXT NOT NULL CHECK (type IN ('user', 'group')),
    from_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    to_id       INTEGER NOT NULL,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    has_handled BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);
CREATE INDEX applies_addressee ON applies (user_id, has_handled);
CREATE INDEX applies_from ON applies (from_id);
CREATE UNIQUE INDEX applies_open ON applies (type, from_id, to_id) WHERE NOT has_handled;
