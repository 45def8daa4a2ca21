-- lwwsync 0.2 -> 0.3: trust no peer (docs/SECURITY.md). Node ids bound to
-- the principal that first used them, cursors per (node, principal), relays,
-- metadata readable by its owner only, a status function that survives any
-- query text.
\echo Use "ALTER EXTENSION lwwsync UPDATE TO '0.3'" to load this file. \quit

-- A node id belongs to the principal (role, and the JWT "sub" behind the
-- gateway) that first synced as it; nobody else may sync as it.
CREATE TABLE lwwsync.bindings (
    node uuid PRIMARY KEY,
    role name NOT NULL,
    subject text NOT NULL DEFAULT '',
    bound_at timestamptz NOT NULL DEFAULT now()
);

-- Roles that relay for other lwwsync servers: they may apply change sets of
-- any origin and forward registers stamped by any node. Superusers always may.
CREATE TABLE lwwsync.relays (role name PRIMARY KEY);

-- Cursors per (node, principal). Cursors from 0.2 keep role '' until the
-- node's principal first reads them (PgEngine::cursor_of claims them).
ALTER TABLE lwwsync.peers ADD COLUMN role name NOT NULL DEFAULT '';
ALTER TABLE lwwsync.peers ADD COLUMN subject text NOT NULL DEFAULT '';
ALTER TABLE lwwsync.peers DROP CONSTRAINT peers_pkey;
ALTER TABLE lwwsync.peers ADD PRIMARY KEY (node, role, subject);

SELECT pg_catalog.pg_extension_config_dump('lwwsync.bindings', '');
SELECT pg_catalog.pg_extension_config_dump('lwwsync.relays', '');

-- Metadata (keys and stamps of every row, deleted ones too) is read by the
-- schema owner only; lww_changes reads user rows with the caller's rights.
DO $$
DECLARE m regclass;
BEGIN
    FOR m IN SELECT c.oid::regclass FROM pg_catalog.pg_class c
              WHERE c.relnamespace = 'lwwsync'::regnamespace AND c.relkind = 'r' AND c.relname LIKE 'm\_%'
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON %s FROM PUBLIC', m);
    END LOOP;
END
$$;

-- Only a running lww_sync's report counts: an active backend whose query
-- text parses as its JSON (any other text, even one that starts the same, is
-- skipped instead of failing the whole function).
CREATE OR REPLACE FUNCTION lww_sync_status()
    RETURNS TABLE (pid integer, url text, started_at timestamptz, progress jsonb)
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    a record;
    p jsonb;
BEGIN
    FOR a IN SELECT s.pid, s.query_start, s.query FROM pg_catalog.pg_stat_activity AS s
              WHERE s.datname = pg_catalog.current_database() AND s.state = 'active'
                AND s.query LIKE 'lww\_sync progress: {%}'
    LOOP
        BEGIN
            p := pg_catalog.substr(a.query, 20)::jsonb;
        EXCEPTION WHEN others THEN
            CONTINUE;
        END;
        IF pg_catalog.jsonb_typeof(p) <> 'object' OR pg_catalog.jsonb_typeof(p -> 'stats') <> 'object' THEN
            CONTINUE;
        END IF;
        pid := a.pid;
        url := p ->> 'url';
        started_at := a.query_start;
        progress := p -> 'stats';
        RETURN NEXT;
    END LOOP;
END
$$;
