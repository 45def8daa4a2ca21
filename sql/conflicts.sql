-- conflicts: the conflict log (issue 11, item 3). With
-- lww_config('conflict_log', 1) every conflict a merge settles is a row of
-- lww_conflicts: an incoming register older than ours ('lost'), an incoming
-- one that replaced a write of ours the sender had not received
-- ('overwrote'), for a column or for the row itself (an insert or delete
-- against the other side's edit). Row by row and set-based alike, bounded
-- by conflict_log_rows. Stamps are relative to now: never printed.
SELECT current_database() AS main_db \gset
CREATE DATABASE lww_conflicts_db;
\c lww_conflicts_db
CREATE EXTENSION lwwsync;
CREATE TABLE notes (id int PRIMARY KEY, title text, body text);
SELECT lww_track('notes');

-- A change set of node ...b1 for notes, its rows stamped offset_ms from now.
CREATE FUNCTION cs(rows jsonb) RETURNS text LANGUAGE sql AS $$
    SELECT jsonb_build_object('format', 'lwwsync.changeset', 'version', 1,
                              'origin', '00000000-0000-4000-8000-0000000000b1', 'since', '0', 'upto', '1',
                              'nodes', jsonb_build_array('00000000-0000-4000-8000-0000000000b1'),
                              'tables', jsonb_build_array(jsonb_build_object(
                                  'name', 'notes', 'key', jsonb_build_array('id'),
                                  'columns', jsonb_build_array('title', 'body'), 'rows', rows)))::text
$$;
-- Row `id` at generation `gen`: columns as [[index, value], ...], with the
-- row register when `row_reg`.
CREATE FUNCTION r(id int, offset_ms bigint, cols jsonb, gen int DEFAULT 1, row_reg boolean DEFAULT false)
RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('key', jsonb_build_array(id), 'gen', gen,
                              'stamp', jsonb_build_array(
                                  (((extract(epoch FROM clock_timestamp()) * 1000)::bigint + offset_ms) << 16)::text, 0))
           || CASE WHEN cols IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('cols', cols) END
           || CASE WHEN row_reg THEN '{"row": true}'::jsonb ELSE '{}'::jsonb END
$$;
CREATE FUNCTION counts(j jsonb) RETURNS text LANGUAGE sql AS $$
    SELECT format('applied %s, lost %s, overwrote %s', j->'applied', j->'lost', j->'overwrote')
$$;
CREATE VIEW logged AS
    SELECT tbl, key, col, kind, ours, theirs, their_node, our_node = lww_node_id() AS ours_local
      FROM lww_conflicts ORDER BY id;

INSERT INTO notes VALUES (1, 'mine', 'my body'), (2, 'second', NULL);

-- Off by default: a conflict is counted, not logged.
SELECT lww_config('conflict_log') AS conflict_log, lww_config('conflict_log_rows') AS conflict_log_rows;
SELECT counts(lww_apply(cs(jsonb_build_array(r(1, -60000, '[[0, "their old title"]]')))));
SELECT count(*) AS logged FROM lww_conflicts;

SELECT lww_config('conflict_log', 1);
-- Their edit, older than ours: lost (our value stays).
SELECT counts(lww_apply(cs(jsonb_build_array(r(1, -60000, '[[0, "their old title"]]')))));
-- Their edit, newer than ours (a minute ahead, inside the drift limit): it
-- replaced our write, which they had not received: overwrote.
SELECT counts(lww_apply(cs(jsonb_build_array(r(1, 60000, '[[1, "their body"]]')))));
-- Their delete of a row we wrote (a new generation): the row itself.
SELECT counts(lww_apply(cs(jsonb_build_array(r(2, 60000, NULL, 2, true)))));
SELECT * FROM logged;
SELECT * FROM notes ORDER BY id;

-- Set-based (four rows or more in one change set merge as a group): each row's conflict.
TRUNCATE lwwsync.conflicts;
INSERT INTO notes SELECT i, 'local ' || i, NULL FROM generate_series(10, 14) AS i;
SELECT counts(lww_apply(cs((SELECT jsonb_agg(r(i, 60000, jsonb_build_array(jsonb_build_array(0, 'remote ' || i))))
                              FROM generate_series(10, 14) AS i))));
SELECT * FROM logged;

-- Bounded: the oldest go first.
SELECT lww_config('conflict_log_rows', 3);
SELECT counts(lww_apply(cs(jsonb_build_array(r(1, -60000, '[[0, "stale again"]]')))));
SELECT count(*) AS kept, max(theirs::text) FILTER (WHERE kind = 'lost') AS newest FROM lww_conflicts;

-- Off again: nothing more is logged.
SELECT lww_config('conflict_log', 0);
SELECT counts(lww_apply(cs(jsonb_build_array(r(1, -60000, '[[0, "unlogged"]]')))));
SELECT count(*) AS kept FROM lww_conflicts;

-- Settings are range-checked; the log is the database owner's to read.
SELECT lww_config('conflict_log', 2);
SELECT lww_config('conflict_log_rows', 0);
SELECT has_table_privilege('public', 'lww_conflicts', 'SELECT') AS public_reads;

\c :main_db
DROP DATABASE lww_conflicts_db;
