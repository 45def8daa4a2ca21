-- lwwsync 0.1 -> 0.2: lww_exchange takes and returns json (callable by
-- PostgREST and lwwsync-server), lww_sync speaks http(s)://, lww_sync_status().
\echo Use "ALTER EXTENSION lwwsync UPDATE TO '0.2'" to load this file. \quit

DROP FUNCTION lww_exchange(text);
-- One unnamed json parameter: PostgREST (>= 9) serves it as POST /rpc/lww_exchange
-- with the request document as the body, as lwwsync-server does.
CREATE FUNCTION lww_exchange(json) RETURNS json
    AS 'MODULE_PATHNAME', 'lww_exchange' LANGUAGE C VOLATILE STRICT;

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
