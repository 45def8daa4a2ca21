-- lwwsync 0.2: metadata in schema lwwsync, the public API in the extension's schema.
\echo Use "CREATE EXTENSION lwwsync" to load this file. \quit

CREATE SCHEMA lwwsync;

-- Every local write and every merged register takes the next value.
CREATE SEQUENCE lwwsync.seq AS bigint;

CREATE TABLE lwwsync.state (key text PRIMARY KEY, value text NOT NULL);
CREATE SEQUENCE lwwsync.node_idx AS int START 1;
CREATE TABLE lwwsync.nodes (idx int PRIMARY KEY DEFAULT nextval('lwwsync.node_idx'), id uuid NOT NULL UNIQUE);
CREATE TABLE lwwsync.tables (
    relid oid PRIMARY KEY,
    name text NOT NULL UNIQUE,        -- the name on the wire
    key_columns text[] NOT NULL,
    columns text[] NOT NULL,          -- register order
    meta text NOT NULL                -- quoted metadata table
);
CREATE TABLE lwwsync.peers (
    node uuid PRIMARY KEY,
    received bigint NOT NULL DEFAULT 0,   -- we hold every row of the peer's changed at or before this
    floor bigint NOT NULL DEFAULT 0,      -- and of later rows every register changed at or before this
    synced_at timestamptz
);

INSERT INTO lwwsync.state(key, value) VALUES ('node_id', gen_random_uuid()::text);
INSERT INTO lwwsync.nodes(idx, id) SELECT 0, value::uuid FROM lwwsync.state WHERE key = 'node_id';

SELECT pg_catalog.pg_extension_config_dump('lwwsync.state', '');
SELECT pg_catalog.pg_extension_config_dump('lwwsync.nodes', '');
SELECT pg_catalog.pg_extension_config_dump('lwwsync.tables', '');
SELECT pg_catalog.pg_extension_config_dump('lwwsync.peers', '');

CREATE FUNCTION lwwsync.lww_trigger() RETURNS trigger
    AS 'MODULE_PATHNAME', 'lww_trigger' LANGUAGE C;
CREATE FUNCTION lwwsync.lww_refuse_truncate() RETURNS trigger
    AS 'MODULE_PATHNAME', 'lww_refuse_truncate' LANGUAGE C;

CREATE FUNCTION lww_version() RETURNS text
    AS 'MODULE_PATHNAME', 'lww_version' LANGUAGE C IMMUTABLE STRICT;
CREATE FUNCTION lww_node_id() RETURNS uuid
    AS 'MODULE_PATHNAME', 'lww_node_id' LANGUAGE C STABLE STRICT;
CREATE FUNCTION lww_track(tbl regclass) RETURNS bigint
    AS 'MODULE_PATHNAME', 'lww_track' LANGUAGE C VOLATILE STRICT;
CREATE FUNCTION lww_untrack(tbl regclass) RETURNS boolean
    AS 'MODULE_PATHNAME', 'lww_untrack' LANGUAGE C VOLATILE STRICT;
CREATE FUNCTION lww_changes(since bigint, max_rows bigint DEFAULT NULL, after bigint DEFAULT NULL) RETURNS text
    AS 'MODULE_PATHNAME', 'lww_changes' LANGUAGE C VOLATILE;
CREATE FUNCTION lww_apply(changeset text) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'lww_apply' LANGUAGE C VOLATILE STRICT;
-- One unnamed json parameter: PostgREST (>= 9) serves it as POST /rpc/lww_exchange
-- with the request document as the body, as lwwsync-server does.
CREATE FUNCTION lww_exchange(json) RETURNS json
    AS 'MODULE_PATHNAME', 'lww_exchange' LANGUAGE C VOLATILE STRICT;
CREATE FUNCTION lww_sync(url text, options jsonb DEFAULT NULL) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'lww_sync' LANGUAGE C VOLATILE;
CREATE FUNCTION lww_config(setting text, value bigint DEFAULT NULL) RETURNS bigint
    AS 'MODULE_PATHNAME', 'lww_config' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION lww_config(text, bigint) FROM PUBLIC;
CREATE FUNCTION lww_seq() RETURNS bigint
    AS 'MODULE_PATHNAME', 'lww_seq' LANGUAGE C VOLATILE STRICT;

-- Trigger functions and metadata tables live in lwwsync; the metadata itself
-- is read and written as this schema's owner by the extension's C++ code.
GRANT USAGE ON SCHEMA lwwsync TO PUBLIC;

-- lww_sync opens connections from the server (like dblink): only for roles granted it.
REVOKE ALL ON FUNCTION lww_sync(text, jsonb) FROM PUBLIC;

-- Syncs running in this database: lww_sync reports its progress in its
-- backend's pg_stat_activity.query after every round trip.
CREATE FUNCTION lww_sync_status()
    RETURNS TABLE (pid integer, url text, started_at timestamptz, progress jsonb)
    LANGUAGE sql STABLE AS $$
    SELECT s.pid, s.p->>'url', s.query_start, s.p->'stats'
      FROM (SELECT a.pid, a.query_start,
                   CASE WHEN a.query LIKE 'lww\_sync progress: {%}'
                        THEN pg_catalog.substr(a.query, 20)::jsonb END AS p
              FROM pg_catalog.pg_stat_activity AS a
             WHERE a.datname = pg_catalog.current_database()) AS s
     WHERE s.p IS NOT NULL
$$;

