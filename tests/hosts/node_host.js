// One device in Node.js with better-sqlite3 (it bundles its own SQLite):
// loads lwwsync, writes its own rows and syncs over HTTP through the gateway
// (tests/hosts/hosts.sh).
//   node node_host.js DB EXT URL TOKEN PREFIX COUNT
// Prints the sync's stats on stderr and the table's rows on stdout as
// id|body|n lines in id order (the dump hosts.sh compares byte for byte).
'use strict';
const Database = require('better-sqlite3');

const [dbPath, ext, url, token, prefix, count] = process.argv.slice(2);
const db = new Database(dbPath);
db.loadExtension(ext);
db.exec('CREATE TABLE IF NOT EXISTS notes(id TEXT PRIMARY KEY, body TEXT NOT NULL, n INTEGER NOT NULL)');
db.prepare("SELECT lww_track('notes')").get();
const insert = db.prepare('INSERT INTO notes VALUES (?, ?, ?)');
for (let i = 0; i < Number(count); i++) insert.run(`${prefix}-${i}`, `from ${prefix} \u2713 ${i}`, i);
const stats = db.prepare("SELECT lww_sync(?, json_object('token', ?)) AS s").get(url, token).s;
console.error(stats);
try {
    db.prepare("SELECT lww_sync(?, json_object('token', 'not-a-token'))").get(url);
    console.error('a sync with a bad token succeeded');
    process.exit(1);
} catch (e) {
    console.error(`bad token refused (${e.code}): ${String(e.message).slice(0, 300)}`);
}
for (const r of db.prepare("SELECT id || '|' || body || '|' || n AS line FROM notes ORDER BY id").all()) {
    console.log(r.line);
}
db.close();
