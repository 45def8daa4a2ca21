-- lwwsync 0.3 -> 0.4: schema evolution (docs/SCHEMA.md). An event trigger
-- keeps lwwsync in step with ALTER TABLE and DROP TABLE of tracked tables in
-- the DDL's own transaction; registers for tables and columns this database
-- does not have yet are held in lwwsync.pending and land when they appear.
\echo Use "ALTER EXTENSION lwwsync UPDATE TO '0.4'" to load this file. \quit

-- Registers are positional (register order = lwwsync.tables.columns); each
-- register's column is known by its attribute number, which survives RENAME
-- and ALTER TYPE and is never reused after DROP COLUMN.
ALTER TABLE lwwsync.tables ADD COLUMN attnums int2[];
UPDATE lwwsync.tables AS t
   SET attnums = (SELECT pg_catalog.array_agg(a.attnum ORDER BY c.ord)
                    FROM pg_catalog.unnest(t.columns) WITH ORDINALITY AS c(name, ord)
                    JOIN pg_catalog.pg_attribute AS a ON a.attrelid = t.relid AND a.attname = c.name
                   WHERE NOT a.attisdropped);

-- Registers held for a table or column this database does not have (yet):
-- one row of a peer's change set each, as a change set of its own
-- (docs/PROTOCOL.md), bounded per origin node.
CREATE TABLE lwwsync.pending (
    id bigserial PRIMARY KEY,
    tbl text NOT NULL,                 -- the table's wire name
    columns text[] NOT NULL,           -- the columns its registers are for
    origin uuid NOT NULL,              -- the node that sent it
    role name NOT NULL DEFAULT '',     -- and who brought it (principal)
    subject text NOT NULL DEFAULT '',
    registers int NOT NULL,
    changeset text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE UNIQUE INDEX pending_row ON lwwsync.pending (tbl, pg_catalog.md5(changeset));
CREATE INDEX pending_origin ON lwwsync.pending (origin);
REVOKE ALL ON lwwsync.pending FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('lwwsync.pending', '');
SELECT pg_catalog.pg_extension_config_dump('lwwsync.pending_id_seq', '');

CREATE FUNCTION lwwsync.lww_ddl_end() RETURNS event_trigger
    AS 'MODULE_PATHNAME', 'lww_ddl_end' LANGUAGE C;
CREATE FUNCTION lwwsync.lww_ddl_drop() RETURNS event_trigger
    AS 'MODULE_PATHNAME', 'lww_ddl_drop' LANGUAGE C;
-- ALTER TABLE of a tracked table: registers added (backfilled), retired,
-- renamed; primary-key changes refused. DROP TABLE: untracked.
CREATE EVENT TRIGGER lwwsync_ddl_end ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION lwwsync.lww_ddl_end();
CREATE EVENT TRIGGER lwwsync_ddl_drop ON sql_drop
    WHEN TAG IN ('DROP TABLE', 'DROP SCHEMA', 'DROP OWNED') EXECUTE FUNCTION lwwsync.lww_ddl_drop();

-- lww_untrack remembers the register order (and, in the metadata, a hash
-- of each living row's values per register), so lww_track stamps only what
-- changed while the table was untracked.
CREATE TABLE lwwsync.untracked (
    relid oid PRIMARY KEY,
    columns text[] NOT NULL,
    attnums int2[]
);
REVOKE ALL ON lwwsync.untracked FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('lwwsync.untracked', '');
