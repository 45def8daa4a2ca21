-- restore: copies and restores (docs/PROTOCOL.md, "Copies and restores").
-- lww_reset_node, and the identity check that makes a restored database
-- (a dump restored elsewhere, a point-in-time restore, a promoted standby)
-- take a new node id by itself. Node ids differ on every run: only facts
-- derived from them are printed.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS lwwsync CASCADE;
RESET client_min_messages;
CREATE EXTENSION lwwsync;
CREATE TABLE r(id int PRIMARY KEY, v text);
SELECT lww_track('r');
INSERT INTO r VALUES (1, 'before');
SELECT lww_node_id() AS first_id \gset
-- The identity the node id was minted under: system id / timeline / database oid.
SELECT value = (SELECT system_identifier FROM pg_control_system())::text || '/' ||
               (SELECT timeline_id FROM pg_control_checkpoint())::text || '/' ||
               (SELECT oid FROM pg_database WHERE datname = current_database())::text AS identity_recorded
  FROM lwwsync.state WHERE key = 'identity';

-- lww_reset_node: a new id now; the old one is a retired node.
SELECT lww_reset_node() AS second_id \gset
SELECT :'second_id' <> :'first_id' AS new_id, lww_node_id() = :'second_id' AS lww_node_id_follows;
SELECT count(*) AS retired FROM lwwsync.retired WHERE node = :'first_id' AND reason = 'lww_reset_node()';
SELECT count(*) AS old_id_is_another_node FROM lwwsync.nodes WHERE id = :'first_id' AND idx > 0;
-- Writes from before the reset go out under the new id, with those after it.
INSERT INTO r VALUES (2, 'after');
SELECT (lww_changes(0)::jsonb)->>'origin' = :'second_id' AS origin_is_new_id,
       jsonb_path_query_array(lww_changes(0)::jsonb, '$.tables[0].rows[*].key[0]') AS keys,
       position(:'first_id' in lww_changes(0)) = 0 AS old_id_not_in_stamps;
-- Cursors restart, both ways.
INSERT INTO lwwsync.peers(node, received, floor) VALUES ('00000000-0000-4000-8000-0000000000aa', 9, 9);
SELECT lww_reset_node() <> :'second_id' AS another_new_id;
SELECT count(*) AS cursors_left FROM lwwsync.peers;
SELECT lww_node_id() AS third_id \gset

-- Superusers only (it changes who this database is to every peer).
CREATE ROLE regress_restore_user;
SET ROLE regress_restore_user;
\set VERBOSITY terse
SELECT lww_reset_node();
\set VERBOSITY default
RESET ROLE;

-- A database whose identity changed (as after a restore or a promotion:
-- here the recorded one is made stale) takes a new node id in its next
-- transaction, by itself.
UPDATE lwwsync.state SET value = '1/1/1' WHERE key = 'identity';
\c
SELECT lww_node_id() <> :'third_id' AS took_a_new_id;
SELECT reason LIKE 'identity 1/1/1 -> %/%/% (a restore, a copy or a promoted standby)' AS why FROM lwwsync.retired WHERE node = :'third_id';
SELECT count(*) AS identity_current FROM lwwsync.state WHERE key = 'identity' AND value <> '1/1/1';
SELECT id, v FROM r ORDER BY id;

-- Registers stamped by a retired id come back from a caller allowed to make
-- the change (a device that pulled them before the failover), but only
-- stamped before the id was retired.
CREATE ROLE regress_restore_dev LOGIN;
GRANT SELECT, INSERT, UPDATE, DELETE ON r TO regress_restore_dev;
SELECT hlc AS retired_hlc FROM lwwsync.retired WHERE node = :'third_id' \gset
CREATE FUNCTION push_as_dev(dev uuid, key int, v text, hlc bigint, retired uuid) RETURNS jsonb LANGUAGE sql AS $$
    SELECT lww_apply(json_build_object(
        'format', 'lwwsync.changeset', 'version', 1, 'origin', dev, 'since', '0', 'upto', '1',
        'tables', json_build_array(json_build_object('name', 'r', 'key', json_build_array('id'),
            'columns', json_build_array('v'),
            'rows', json_build_array(json_build_object('key', json_build_array(key), 'gen', 1,
                'stamp', json_build_array(hlc::text, 1), 'row', true,
                'cols', json_build_array(json_build_array(0, v)))))),
        'nodes', json_build_array(dev, retired))::text)
$$;
SET ROLE regress_restore_dev;
SELECT push_as_dev('3f1e2a4e-9b1d-4c3e-8f00-1a2b3c4d5e6f', 10, 'lost on the server', :retired_hlc - 65536, :'third_id')->'applied' AS before_retirement;
SELECT push_as_dev('3f1e2a4e-9b1d-4c3e-8f00-1a2b3c4d5e6f', 11, 'forged', :retired_hlc + 65536, :'third_id')->'rejected' AS after_retirement;
RESET ROLE;
SELECT id, v FROM r ORDER BY id;

SET client_min_messages = warning;
DROP EXTENSION lwwsync CASCADE;
DROP TABLE r;
DROP FUNCTION push_as_dev;
DROP OWNED BY regress_restore_dev;
DROP ROLE regress_restore_user, regress_restore_dev;
CREATE EXTENSION lwwsync;
