-- lww_sync over HTTP(S): options, errors a user sees without a server, the
-- status function, and the 0.1 -> 0.2 upgrade. Syncs through a live
-- lwwsync-server are covered by tests/e2e (real processes).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS lwwsync CASCADE;
DROP SCHEMA IF EXISTS lwwsync CASCADE;
RESET client_min_messages;

-- An 0.1 installation upgrades in place: lww_exchange becomes json -> json.
CREATE EXTENSION lwwsync VERSION '0.1';
SELECT pg_get_function_identity_arguments('lww_exchange'::regproc) AS args_01;
ALTER EXTENSION lwwsync UPDATE TO '0.2';
SELECT extversion FROM pg_extension WHERE extname = 'lwwsync';
SELECT p.oid::regprocedure AS exchange, p.prorettype::regtype AS returns
  FROM pg_proc p WHERE p.proname = 'lww_exchange';
SELECT count(*) AS running FROM lww_sync_status();
-- And on to the current version (sql/upgrade.sql checks that chain).
ALTER EXTENSION lwwsync UPDATE;
SELECT count(*) AS running FROM lww_sync_status();

CREATE TABLE notes(id int PRIMARY KEY, body text);
SELECT lww_track('notes');
INSERT INTO notes VALUES (1, 'offline edit');

-- Errors, with the run-dependent parts (timings) masked.
CREATE FUNCTION sync_error(url text, opts jsonb DEFAULT NULL) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM lww_sync(url, opts);
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN regexp_replace(SQLERRM, '[0-9]+ ms', 'N ms', 'g');
END
$$;
-- Nothing listens on port 1: a clear error, after the configured retries.
SELECT sync_error('http://127.0.0.1:1/rpc/lww_exchange', '{"retries": 0}');
-- (Each retry is announced as a NOTICE with its backoff; muted here, as timings vary.)
SET client_min_messages = warning;
SELECT sync_error('http://127.0.0.1:1/rpc/lww_exchange', '{"retries": 2}');
RESET client_min_messages;
-- Credentials never show in errors.
SELECT sync_error('http://user:secret@127.0.0.1:1/rpc/lww_exchange?x=1', '{"retries": 0}');
SELECT sync_error('ftp://127.0.0.1/x');
-- Every option is checked by name.
SELECT sync_error('http://127.0.0.1:1/', '{"retry": 1}');
SELECT sync_error('http://127.0.0.1:1/', '{"token": 42}');
SELECT sync_error('http://127.0.0.1:1/', '{"insecure": "yes"}');
SELECT sync_error('http://127.0.0.1:1/', '{"batch_bytes": 10}');
SELECT sync_error('http://127.0.0.1:1/', '{"batch_rows": 0}');
SELECT sync_error('http://127.0.0.1:1/', '{"timeout_ms": -5}');
SELECT sync_error('http://127.0.0.1:1/', '"not an object"');
-- A failed sync changed nothing.
SELECT * FROM notes;
SELECT count(*) AS cursors FROM lwwsync.peers;
SELECT count(*) AS running FROM lww_sync_status();
