-- lwwsync 0.3 -> 0.4, part 1: schema evolution (docs/SCHEMA.md). An event trigger
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


-- Part 2: apply in foreign-key order with the app's triggers
-- quiet (as logical replication's apply), rows the receiver cannot apply
-- parked instead of failing the sync (docs/ARCHITECTURE.md, "Apply").

-- Rows a receiver could not apply (a foreign key, UNIQUE, CHECK, a policy, a
-- privilege), per principal (role, and the JWT "sub" behind the gateway):
-- retried on every later apply, dropped once applied or superseded.
CREATE TABLE lwwsync.rejected (
    id bigserial PRIMARY KEY,
    role name NOT NULL,
    subject text NOT NULL DEFAULT '',
    tbl text NOT NULL,                 -- wire name of the table
    key jsonb NOT NULL,                -- the row's key as the change set spells it
    reason text NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_seen timestamptz NOT NULL DEFAULT pg_catalog.now(),
    trusted boolean NOT NULL DEFAULT false,  -- pulled from a server this database chose
    changeset text NOT NULL            -- the row's registers: a one-row change set
);
CREATE INDEX rejected_principal ON lwwsync.rejected (role, subject, last_seen);
REVOKE ALL ON lwwsync.rejected FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('lwwsync.rejected', '');
SELECT pg_catalog.pg_extension_config_dump('lwwsync.rejected_id_seq', '');

-- The "sub" claim as principal.cpp reads it ('' without one).
CREATE FUNCTION lwwsync.jwt_subject() RETURNS text LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    c jsonb;
BEGIN
    c := NULLIF(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb;
    IF c IS NULL OR pg_catalog.jsonb_typeof(c) <> 'object' OR c -> 'sub' IS NULL OR c -> 'sub' = 'null'::jsonb THEN
        RETURN '';
    END IF;
    RETURN c ->> 'sub';
EXCEPTION WHEN others THEN
    RETURN NULL;  -- unreadable claims: no parked rows at all
END
$$;

-- The caller's own parked rows only (the view reads the table as its owner,
-- filtered by the caller's principal). Deleting from it gives a row up.
CREATE VIEW lww_rejected WITH (security_barrier) AS
    SELECT r.tbl AS "table", r.key, r.reason, r.first_seen, r.last_seen, r.changeset
      FROM lwwsync.rejected AS r
     WHERE r.role = CURRENT_USER AND r.subject = lwwsync.jwt_subject();
GRANT SELECT, DELETE ON lww_rejected TO PUBLIC;

-- The capture trigger fires ALWAYS: lww_apply runs with
-- session_replication_role = replica (the app's ordinary triggers stay
-- quiet) and the trigger tells the merge's own write from every other write.
DO $$
DECLARE t regclass;
BEGIN
    FOR t IN SELECT relid::regclass FROM lwwsync.tables
    LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = t AND tgname = 'lwwsync_capture') THEN
            EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER lwwsync_capture', t);
        END IF;
    END LOOP;
END
$$;

-- A tombstone keeps its row's last values (tables under row-level security):
-- lww_changes sends a tombstone to a caller under row-level security only if
-- the table's SELECT policies would have shown that caller the row.
DO $$
DECLARE m regclass;
BEGIN
    FOR m IN SELECT c.oid::regclass FROM pg_catalog.pg_class c
              WHERE c.relnamespace = 'lwwsync'::regnamespace AND c.relkind = 'r' AND c.relname LIKE 'm\_%'
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s ADD COLUMN IF NOT EXISTS last jsonb', m);
    END LOOP;
END
$$;


-- Part 3: copies and restores (docs/PROTOCOL.md, "Copies and
-- restores"). A database restored from a dump or a backup, or a standby
-- promoted to primary, takes a new node id by itself; lww_reset_node()
-- takes one on demand.

-- Node ids this database used before: registers stamped by them (that
-- devices pulled before a failover or a restore, and push back) are taken
-- from any caller allowed to make the change, up to the clock at
-- retirement (docs/SECURITY.md).
CREATE TABLE lwwsync.retired (
    node uuid PRIMARY KEY,
    hlc bigint NOT NULL,            -- the clock when it was retired: later stamps of it are forged
    reason text NOT NULL,
    retired_at timestamptz NOT NULL DEFAULT now()
);

-- Server side: per caller node, the id of its push that last moved our
-- cursor on it (the caller checks it sent that push; a copy did not).
CREATE TABLE lwwsync.push_marks (node uuid PRIMARY KEY, id text NOT NULL);

-- Client side: ids of the recent pushes this database sent, per server.
CREATE TABLE lwwsync.pushes (
    n bigserial PRIMARY KEY,
    peer uuid NOT NULL,
    id text NOT NULL
);
CREATE INDEX pushes_peer_id ON lwwsync.pushes (peer, id);

-- A dump restored into another database keeps the metadata and the node
-- directory and drops the rows CREATE EXTENSION made itself (the node id it
-- minted stays, as the copy's new id); the old id travels as 'self_node',
-- and 'identity' says where it was minted (both written on first use), so
-- the restore finds out (pg_ext/src/state.cpp). Both sequences travel too:
-- sequences handed out after a restore stay above the restored metadata's.
SELECT pg_catalog.pg_extension_config_dump('lwwsync.state', 'WHERE key <> ''node_id''');
SELECT pg_catalog.pg_extension_config_dump('lwwsync.nodes', 'WHERE idx <> 0');
SELECT pg_catalog.pg_extension_config_dump('lwwsync.retired', '');
SELECT pg_catalog.pg_extension_config_dump('lwwsync.seq', '');
SELECT pg_catalog.pg_extension_config_dump('lwwsync.node_idx', '');

REVOKE ALL ON lwwsync.retired, lwwsync.push_marks, lwwsync.pushes FROM PUBLIC;

-- A new node id now (provisioning scripts, a clone made by other means):
-- every register this database stamped goes out under it; the old id stays
-- as a retired node. Returns the new id.
CREATE FUNCTION lww_reset_node() RETURNS uuid
    AS 'MODULE_PATHNAME', 'lww_reset_node' LANGUAGE C VOLATILE STRICT;
REVOKE ALL ON FUNCTION lww_reset_node() FROM PUBLIC;
