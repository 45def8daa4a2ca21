-- relay: no echo (issue 11, item 4). Registers a database merged from a
-- peer go no further back to that peer: not a client's pulled rows in its
-- next push (A -> B -> C, then C -> B), not a relay's pushed rows in the
-- server's next answer (C relays A's rows to B). Three databases of one
-- instance over postgresql:// (the superuser relays for other nodes).
SELECT current_database() AS main_db \gset
CREATE DATABASE lww_rl_a;
CREATE DATABASE lww_rl_b;
CREATE DATABASE lww_rl_c;
SELECT 'postgresql:///lww_rl_a?host=' || current_setting('unix_socket_directories')
       || '&port=' || current_setting('port') AS url_a,
       'postgresql:///lww_rl_b?host=' || current_setting('unix_socket_directories')
       || '&port=' || current_setting('port') AS url_b \gset
-- Each database: the table, tracked, and moved(stats): what one sync pushed and pulled.
\set setup 'CREATE EXTENSION lwwsync; CREATE TABLE items(id int PRIMARY KEY, name text, note text); SELECT lww_track(''items''); CREATE FUNCTION moved(s jsonb) RETURNS text LANGUAGE sql AS $$ SELECT format(''pushed %s (registers %s), pulled %s (registers %s)'', s->''pushed'', s->''sent''->''received'', s->''pulled'', s->''received''->''received'') $$;'
\c lww_rl_a
:setup
\c lww_rl_b
:setup
\c lww_rl_c
:setup

-- A -> B -> C.
\c lww_rl_a
INSERT INTO items VALUES (1, 'one', NULL), (2, 'two', NULL), (3, 'three', NULL);
DELETE FROM items WHERE id = 3;
SELECT lww_sync(:'url_b') IS NOT NULL AS synced;
\c lww_rl_c
SELECT moved(lww_sync(:'url_b'));
-- C -> B: nothing of A's goes back.
SELECT moved(lww_sync(:'url_b'));
SELECT count(*) AS ranges_kept FROM lwwsync.relayed;
-- C's own edit of a pulled row goes, alone.
UPDATE items SET note = 'from c' WHERE id = 2;
SELECT moved(lww_sync(:'url_b'));

-- C relays A's new rows to B with its own; B's answers carry none back.
\c lww_rl_a
INSERT INTO items VALUES (10, 'ten', NULL), (11, 'eleven', NULL);
\c lww_rl_c
-- (C's first sync with A: A sends all it has, C's edit goes to A.)
SELECT moved(lww_sync(:'url_a'));
INSERT INTO items VALUES (20, 'twenty', 'c');
SELECT moved(lww_sync(:'url_b'));
SELECT moved(lww_sync(:'url_b'));
\c lww_rl_b
SELECT count(*) > 0 AS b_keeps_ranges_for_c FROM lwwsync.relayed;
SELECT * FROM items ORDER BY id;
-- A gets C's row through B; nothing of its own comes back.
\c lww_rl_a
SELECT moved(lww_sync(:'url_b'));
SELECT * FROM items ORDER BY id;
\c lww_rl_c
SELECT * FROM items ORDER BY id;

-- A row pulled before its parent waits parked; it lands at the retry that
-- opens the next sync, counts as relayed by B, and does not go back.
\set fk_setup 'CREATE TABLE parent(id int PRIMARY KEY, name text); CREATE TABLE child(id int PRIMARY KEY, parent int REFERENCES parent(id), name text); SELECT lww_track(''parent'') IS NOT NULL AND lww_track(''child'') IS NOT NULL AS tracked;'
\c lww_rl_b
:fk_setup
\c lww_rl_c
:fk_setup
\c lww_rl_a
:fk_setup
INSERT INTO parent VALUES (1, 'p1');
INSERT INTO child VALUES (1, 1, 'c1');
SELECT lww_sync(:'url_b') IS NOT NULL AS synced;
UPDATE parent SET name = 'p1 renamed' WHERE id = 1;  -- on B, now after the child
SELECT lww_sync(:'url_b') IS NOT NULL AS synced;
\c lww_rl_c
SELECT lww_sync(:'url_b', '{"batch_rows":1}')->'received'->>'rejected' AS parked_on_the_way;
SELECT count(*) AS children FROM child;
SELECT moved(lww_sync(:'url_b'));
SELECT * FROM child;

\c :main_db
DROP DATABASE lww_rl_a;
DROP DATABASE lww_rl_b;
DROP DATABASE lww_rl_c;
