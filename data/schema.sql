-- Schema of the bundled SQLite database (data/users.db).
-- `id` is an INTEGER PRIMARY KEY, i.e. SQLite's rowid: the stable, unique
-- order /users is served in. Rebuild with `make db` after editing.
CREATE TABLE users (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL
);
