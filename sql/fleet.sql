-- fleet: nothing a transaction does grows with the number of devices (nodes)
-- or tracked tables (issue 10). A single-row INSERT, UPDATE and DELETE, an
-- lww_changes of one row and a small lww_exchange run exactly as many SPI
-- statements (lwwsync.statement_count()) with 100 000 nodes and 50 tracked
-- tables as with one node and one table. Each operation runs twice, in its
-- own transaction: the first fills the backend's caches, the second counts.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS lwwsync CASCADE;
RESET client_min_messages;
CREATE EXTENSION lwwsync;
CREATE TABLE cost(scenario text, op text, n bigint, PRIMARY KEY (scenario, op));
CREATE TABLE peer_cursor(upto bigint);
INSERT INTO peer_cursor VALUES (0);
CREATE TABLE t1(id int PRIMARY KEY, v text);
SELECT lww_track('t1');

-- A push of one row of `tbl` by the peer, and a pull of what it lacks past `received`.
CREATE FUNCTION exchange_one(tbl text, k int, received bigint) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    since bigint;
    resp jsonb;
BEGIN
    SELECT upto INTO since FROM peer_cursor;
    resp := lww_exchange(format('{"format":"lwwsync.exchange","version":1,
      "node":"00000000-0000-4000-8000-0000000000f1","received":"%s","limit":10,
      "push":{"format":"lwwsync.changeset","version":1,"origin":"00000000-0000-4000-8000-0000000000f1",
        "since":"%s","upto":"%s","nodes":["00000000-0000-4000-8000-0000000000f1"],
        "tables":[{"name":"%s","key":["id"],"columns":["v"],"rows":[
          {"key":[%s],"gen":1,"stamp":["%s",0],"row":true,"cols":[[0,"pushed"]]}]}]}}',
      received, since, since + 1, tbl, k,
      (((extract(epoch FROM clock_timestamp()) * 1000)::bigint) << 16)::text)::json)::jsonb;
    UPDATE peer_cursor SET upto = since + 1;
    RETURN resp;
END $$;

CREATE PROCEDURE measure(scenario text, tbl text) LANGUAGE plpgsql AS $$
DECLARE
    c bigint;
    s bigint;
    n bigint;
    rows int;
    resp jsonb;
BEGIN
    FOR pass IN 1..2 LOOP
        EXECUTE format('INSERT INTO %I VALUES (100 + $1, ''seed'')', tbl) USING pass;
        COMMIT;

        c := lwwsync.statement_count();
        EXECUTE format('INSERT INTO %I VALUES ($1, ''new'')', tbl) USING pass;
        COMMIT;
        n := lwwsync.statement_count() - c;
        IF pass = 2 THEN INSERT INTO cost VALUES (scenario, 'insert', n); END IF;

        c := lwwsync.statement_count();
        EXECUTE format('UPDATE %I SET v = ''changed'' WHERE id = $1', tbl) USING pass;
        COMMIT;
        n := lwwsync.statement_count() - c;
        IF pass = 2 THEN INSERT INTO cost VALUES (scenario, 'update', n); END IF;

        c := lwwsync.statement_count();
        EXECUTE format('DELETE FROM %I WHERE id = $1', tbl) USING pass;
        COMMIT;
        n := lwwsync.statement_count() - c;
        IF pass = 2 THEN INSERT INTO cost VALUES (scenario, 'delete', n); END IF;

        s := lww_seq();
        EXECUTE format('UPDATE %I SET v = ''again'' WHERE id = 100 + $1', tbl) USING pass;
        COMMIT;
        c := lwwsync.statement_count();
        SELECT jsonb_array_length(lww_changes(s)::jsonb->'tables'->0->'rows') INTO rows;
        COMMIT;
        n := lwwsync.statement_count() - c;
        IF rows <> 1 THEN RAISE EXCEPTION 'lww_changes returned % rows', rows; END IF;
        IF pass = 2 THEN INSERT INTO cost VALUES (scenario, 'lww_changes of one row', n); END IF;

        s := lww_seq();
        EXECUTE format('UPDATE %I SET v = ''pulled'' WHERE id = 100 + $1', tbl) USING pass;
        COMMIT;
        c := lwwsync.statement_count();
        resp := exchange_one(tbl, 200 + pass, s);
        COMMIT;
        n := lwwsync.statement_count() - c;
        IF (resp->'applied'->>'rows')::int <> 1 OR jsonb_array_length(resp->'pull'->'tables'->0->'rows') <> 1 THEN
            RAISE EXCEPTION 'unexpected exchange: %', resp;
        END IF;
        IF pass = 2 THEN INSERT INTO cost VALUES (scenario, 'lww_exchange of one row each way', n); END IF;
    END LOOP;
END $$;

-- One node (this database's) and the peer's, one table.
SELECT count(*) AS nodes FROM lwwsync.nodes;
CALL measure('one', 't1');

-- 100 000 nodes, 50 tracked tables, each with rows in its metadata.
INSERT INTO lwwsync.nodes(id) SELECT gen_random_uuid() FROM generate_series(1, 100000);
DO $$
BEGIN
    FOR i IN 2..50 LOOP
        EXECUTE format('CREATE TABLE %I(id int PRIMARY KEY, v text)', 't' || i);
        PERFORM lww_track(('t' || i)::regclass);
        EXECUTE format('INSERT INTO %I SELECT g, ''row'' FROM generate_series(1000, 1009) g', 't' || i);
    END LOOP;
END $$;
SELECT count(*) > 100000 AS many_nodes, (SELECT count(*) FROM lwwsync.tables) AS tables FROM lwwsync.nodes;
CALL measure('fleet', 't25');

SELECT a.op, a.n > 0 AS counted, b.n - a.n AS more_with_fleet
  FROM cost a JOIN cost b ON b.op = a.op AND b.scenario = 'fleet'
 WHERE a.scenario = 'one' ORDER BY a.op;

-- The node cache forgets ids recorded by a transaction (or savepoint) that
-- rolled back: the next change set of that node records it again.
CREATE FUNCTION cs_of(origin text, k int) RETURNS text LANGUAGE sql AS $$
    SELECT format('{"format":"lwwsync.changeset","version":1,"origin":"%s","since":"0","upto":"1",
      "nodes":["%s"],"tables":[{"name":"t1","key":["id"],"columns":["v"],"rows":[
        {"key":[%s],"gen":1,"stamp":["%s",0],"row":true,"cols":[[0,"from %s"]]}]}]}',
      origin, origin, k, (((extract(epoch FROM clock_timestamp()) * 1000)::bigint) << 16)::text, origin)
$$;
BEGIN;
SELECT lww_apply(cs_of('00000000-0000-4000-8000-0000000000a1', 501))->'applied' AS applied;
ROLLBACK;
BEGIN;
SAVEPOINT s;
SELECT lww_apply(cs_of('00000000-0000-4000-8000-0000000000a2', 502))->'applied' AS applied;
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT lww_apply(cs_of('00000000-0000-4000-8000-0000000000a1', 501))->'applied' AS applied;
SELECT lww_apply(cs_of('00000000-0000-4000-8000-0000000000a2', 502))->'applied' AS applied;
-- Each row names an index lwwsync.nodes holds, with its origin's id.
SELECT format('lwwsync.%I', 'm_' || 't1'::regclass::oid) AS meta \gset
SELECT m.k0 AS id, n.id AS stamped_by
  FROM :meta m CROSS JOIN LATERAL lwwsync.meta_fields(m.st) f LEFT JOIN lwwsync.nodes n ON n.idx = f.node
 WHERE m.k0 IN (501, 502) ORDER BY 1;

SET client_min_messages = warning;
DROP EXTENSION lwwsync CASCADE;
DROP PROCEDURE measure;
DROP FUNCTION exchange_one, cs_of;
DROP TABLE cost, peer_cursor;
RESET client_min_messages;
DO $$ BEGIN FOR i IN 1..50 LOOP EXECUTE format('DROP TABLE %I', 't' || i); END LOOP; END $$;
