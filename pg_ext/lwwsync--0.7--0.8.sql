-- lwwsync 0.7 -> 0.8: smaller metadata (issue 11, docs/ARCHITECTURE.md "State
-- of one database"). A row's change sequence, generation and registers are packed
-- into one blob, st: 40 bytes of fixed-width columns become about 14, and a
-- column written apart from its row costs 11 more instead of 14. The feed
-- orders by an index on lwwsync.meta_seq(st).
\echo Use "ALTER EXTENSION lwwsync UPDATE TO '0.8'" to load this file. \quit

-- A stored row's change sequence (what the feed orders by) and generation
-- (odd: alive), for statements that filter by them.
CREATE FUNCTION lwwsync.meta_seq(st bytea) RETURNS bigint
    AS 'MODULE_PATHNAME', 'lww_meta_seq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION lwwsync.meta_gen(st bytea) RETURNS bigint
    AS 'MODULE_PATHNAME', 'lww_meta_gen' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- What 0.7 kept in columns, read back from st: for inspection and tests.
CREATE FUNCTION lwwsync.meta_fields(st bytea, OUT seq bigint, OUT gen bigint, OUT hlc bigint, OUT node bigint,
                                    OUT row_seq bigint, OUT cols bytea) RETURNS record
    AS 'MODULE_PATHNAME', 'lww_meta_fields' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Every metadata table still in 0.7's layout (tracked, or kept by
-- lww_untrack) is rewritten into a new table: dropped columns would keep
-- their place in every row (a wider header) were it altered in place.
CREATE FUNCTION lwwsync.meta_pack_07(gen bigint, hlc bigint, node integer, mseq bigint, seq bigint, cols bytea)
    RETURNS bytea AS 'MODULE_PATHNAME', 'lww_meta_pack_07' LANGUAGE C IMMUTABLE;

DO $$
DECLARE
    m record;
    g record;
    key_defs text;
    key_names text;
    more_defs text;
    more_names text;
    fresh text;
BEGIN
    FOR m IN SELECT c.oid, c.relname, c.relowner, c.relacl, c.reloptions,
                    (SELECT t.spcname FROM pg_catalog.pg_tablespace t WHERE t.oid = c.reltablespace) AS tablespace
               FROM pg_catalog.pg_class c
              WHERE c.relnamespace = 'lwwsync'::regnamespace AND c.relkind = 'r' AND c.relname LIKE 'm\_%'
                AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                             WHERE a.attrelid = c.oid AND a.attname = 'mseq' AND NOT a.attisdropped)
              ORDER BY c.relname
    LOOP
        SELECT pg_catalog.string_agg(pg_catalog.format('%I %s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod))
                   || CASE WHEN a.attcollation <> 0 THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END,
                   ', ' ORDER BY a.attnum),
               pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum)
          INTO key_defs, key_names
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = m.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attname ~ '^k[0-9]+$';
        SELECT pg_catalog.string_agg(pg_catalog.format(', %I %s', a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)),
                   '' ORDER BY a.attnum),
               pg_catalog.string_agg(', ' || pg_catalog.quote_ident(a.attname), '' ORDER BY a.attnum)
          INTO more_defs, more_names
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = m.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attname IN ('last', 'vh');
        fresh := m.relname || '_08';
        -- The storage options and tablespace an administrator gave it stay.
        EXECUTE pg_catalog.format('CREATE TABLE lwwsync.%I (%s, st bytea NOT NULL%s, PRIMARY KEY (%s))%s%s',
                                  fresh, key_defs, coalesce(more_defs, ''), key_names,
                                  CASE WHEN m.reloptions IS NULL THEN ''
                                       ELSE ' WITH (' || pg_catalog.array_to_string(m.reloptions, ', ') || ')' END,
                                  CASE WHEN m.tablespace IS NULL THEN ''
                                       ELSE pg_catalog.format(' TABLESPACE %I', m.tablespace) END);
        -- Metadata tables belong to their tracked tables, not to the extension.
        EXECUTE pg_catalog.format('ALTER EXTENSION lwwsync DROP TABLE lwwsync.%I', fresh);
        EXECUTE pg_catalog.format('INSERT INTO lwwsync.%I (%s, st%s) SELECT %s,'
                                  ' lwwsync.meta_pack_07(gen, hlc, node, mseq, seq, cols)%s FROM lwwsync.%I',
                                  fresh, key_names, coalesce(more_names, ''), key_names, coalesce(more_names, ''), m.relname);
        EXECUTE pg_catalog.format('DROP TABLE lwwsync.%I', m.relname);
        EXECUTE pg_catalog.format('ALTER TABLE lwwsync.%I RENAME TO %I', fresh, m.relname);
        EXECUTE pg_catalog.format('ALTER INDEX lwwsync.%I RENAME TO %I', fresh || '_pkey', m.relname || '_pkey');
        EXECUTE pg_catalog.format('CREATE INDEX %I ON lwwsync.%I ((lwwsync.meta_seq(st))) WITH (fillfactor = 100)',
                                  m.relname || '_seq', m.relname);
        -- (regrole prints as an identifier, quoted where it needs it.)
        EXECUTE pg_catalog.format('ALTER TABLE lwwsync.%I OWNER TO %s', m.relname, m.relowner::regrole);
        -- Grants an administrator added (0.3 revoked PUBLIC's) stay too.
        FOR g IN SELECT pg_catalog.format('GRANT %s ON lwwsync.%I TO %s%s', a.privilege_type, m.relname,
                                          CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                                          CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) AS sql
                   FROM pg_catalog.aclexplode(m.relacl) AS a WHERE a.grantee <> m.relowner
        LOOP
            EXECUTE g.sql;
        END LOOP;
        EXECUTE pg_catalog.format('ANALYZE lwwsync.%I', m.relname);
    END LOOP;
END
$$;

DROP FUNCTION lwwsync.meta_pack_07(bigint, bigint, integer, bigint, bigint, bytea);
