#!/usr/bin/python3
"""One device in Python's sqlite3 module: loads lwwsync, writes its own rows
and syncs over HTTP through the gateway (tests/hosts/hosts.sh).

    python_host.py DB EXT URL TOKEN PREFIX COUNT

Prints the sync's stats on stderr and the table's rows on stdout as
id|body|n lines in id order (the dump hosts.sh compares byte for byte).
Debian's /usr/bin/python3 can load extensions (enable_load_extension);
some builds cannot (pyenv's by default), so hosts.sh runs this one."""
import json
import sqlite3
import sys

db_path, ext, url, token, prefix, count = sys.argv[1:7]
con = sqlite3.connect(db_path, isolation_level=None)  # autocommit: lww_sync manages its transactions
con.enable_load_extension(True)
con.load_extension(ext)
con.enable_load_extension(False)
con.execute("CREATE TABLE IF NOT EXISTS notes(id TEXT PRIMARY KEY, body TEXT NOT NULL, n INTEGER NOT NULL)")
con.execute("SELECT lww_track('notes')")
for i in range(int(count)):
    con.execute("INSERT INTO notes VALUES (?, ?, ?)", (f"{prefix}-{i}", f"from {prefix} \u2713 {i}", i))
stats = json.loads(con.execute("SELECT lww_sync(?, json_object('token', ?))", (url, token)).fetchone()[0])
print(json.dumps(stats), file=sys.stderr)
try:
    con.execute("SELECT lww_sync(?, json_object('token', 'not-a-token'))", (url,))
    print("a sync with a bad token succeeded", file=sys.stderr)
    sys.exit(1)
except sqlite3.Error as e:  # SQLITE_PERM (the gateway answered 401): docs/ERRORS.md
    name = getattr(e, "sqlite_errorname", "?")  # Python 3.11+
    print(f"bad token refused ({type(e).__name__} {name}): " + str(e)[:300], file=sys.stderr)
for row in con.execute("SELECT id || '|' || body || '|' || n FROM notes ORDER BY id"):
    print(row[0])
con.close()
