-- lwwsync 0.3 -> 0.4: placeholder (the schema branch brings the real one;
-- the restore branch only needs the upgrade chain to reach 0.5).
\echo Use "ALTER EXTENSION lwwsync UPDATE TO '0.4'" to load this file. \quit
