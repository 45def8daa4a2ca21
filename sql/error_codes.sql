-- error_codes: each kind of lwwsync error has its SQLSTATE (docs/ERRORS.md),
-- so an app can catch it by condition name and the gateway can answer with
-- a fitting HTTP status.
SELECT current_database() AS main_db \gset
CREATE DATABASE lww_error_codes;
\c lww_error_codes
CREATE EXTENSION lwwsync;
CREATE TABLE t(id int PRIMARY KEY, v text);
SELECT lww_track('t');

-- SQLSTATE and message of a statement (node ids, seconds, sizes masked), or 'ok'.
CREATE FUNCTION code_of(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(regexp_replace(regexp_replace(SQLERRM,
        '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<node>', 'g'),
        'is [0-9]+ s ahead', 'is <n> s ahead'), '\([0-9]+ bytes\)', '(<n> bytes)');
END $$;
CREATE FUNCTION hlc_in(seconds int) RETURNS text LANGUAGE sql AS
$$ SELECT (((extract(epoch FROM clock_timestamp()) + seconds) * 1000)::bigint << 16)::text $$;
CREATE FUNCTION one_row(hlc text) RETURNS text LANGUAGE sql AS $$
    SELECT format('{"format":"lwwsync.changeset","version":1,"origin":"00000000-0000-4000-8000-0000000000a1",'
                  '"since":"0","upto":"1","nodes":["00000000-0000-4000-8000-0000000000a1"],'
                  '"tables":[{"name":"t","key":["id"],"columns":["v"],'
                  '"rows":[{"key":[1],"gen":1,"stamp":["%s",0],"row":true,"cols":[[0,"x"]]}]}]}', hlc)
$$;

-- bad input: 22000 (data_exception)
SELECT code_of($$SELECT lww_apply('{"format":')$$);
-- not found: a table that is not there (PostgreSQL's own lookup of the
-- name: 42P01; lwwsync's "not tracked" is 42704, undefined_object)
SELECT code_of($$SELECT lww_track('nope')$$);
-- clock drift: 22008 (datetime_field_overflow)
SELECT code_of(format('SELECT lww_apply(%L)', one_row(hlc_in(3600))));
SELECT code_of(format($$SELECT lww_exchange('{"format":"lwwsync.exchange","version":1,'
    '"node":"00000000-0000-4000-8000-0000000000a1","clock":"%s"}')$$, hlc_in(3600)));
-- limit: 54000 (program_limit_exceeded): the pending store holds one row
-- per node here, and a second row of a table not here yet overflows it.
SELECT lww_config('pending_max_rows', 1);
SELECT lww_apply(replace(one_row(hlc_in(0)), '"name":"t"', '"name":"later"'))::jsonb->'pending' AS pending;
SELECT code_of(format('SELECT lww_apply(%L)',
    replace(replace(one_row(hlc_in(0)), '"name":"t"', '"name":"later"'), '"key":[1]', '"key":[2]')));
-- An app catches them by name.
DO $$ BEGIN
    PERFORM lww_apply(one_row(hlc_in(3600)));
EXCEPTION WHEN datetime_field_overflow THEN
    RAISE NOTICE 'caught the drift refusal by name';
END $$;
-- The apply that was refused left nothing behind; a current stamp lands.
SELECT count(*) FROM t;
SELECT lww_apply(one_row(hlc_in(0)))::jsonb->'rows' AS rows;
SELECT * FROM t;

\c :main_db
DROP DATABASE lww_error_codes;
