"""sqlite_dump / sqlite_restore on real database files, run through ansible-playbook."""

from __future__ import annotations

import hashlib
import os
import pwd
import sqlite3
import stat
import subprocess
import sys
import time

import pytest

from harness.common import run_module

WRITER = r'''
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=30)
conn.execute('PRAGMA journal_mode=WAL')
i = 0
while True:
    conn.execute("INSERT INTO events (body, payload) VALUES (?, ?)", ('live %d ✓' % i, bytes([i % 256]) * 64))
    conn.commit()
    i += 1
    if i == 50:
        open(sys.argv[2], 'w').close()
    time.sleep(0.0005)
'''


def make_db(path, rows=5000, wal=True):
    conn = sqlite3.connect(str(path))
    if wal:
        conn.execute('PRAGMA journal_mode=WAL')
    conn.executescript('''
        CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, avatar BLOB, note TEXT DEFAULT 'none');
        CREATE UNIQUE INDEX users_name ON users (name);
        CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT, payload BLOB,
                             at TEXT DEFAULT CURRENT_TIMESTAMP);
        CREATE VIEW high AS SELECT id, name FROM users WHERE score > 50;
        CREATE TRIGGER users_guard BEFORE UPDATE ON users BEGIN SELECT RAISE(ABORT, 'no') WHERE NEW.score < 0; END;
        PRAGMA user_version = 7;
    ''')
    conn.executemany('INSERT INTO users (name, score, avatar, note) VALUES (?, ?, ?, ?)',
                     [('ユーザー %d 😀' % i, None if i % 7 == 0 else i * 0.5, os.urandom(32) if i % 3 else None,
                       None if i % 5 == 0 else 'n%d' % i) for i in range(rows)])
    conn.commit()
    conn.close()


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip_keeps_owner_mode_and_bak(tmp_path):
    src = tmp_path / 'app.sqlite'
    make_db(src)
    dest = tmp_path / 'app.sqlite.zst'
    result = run_module('sqlite_dump', {'path': str(src), 'dest': str(dest), 'checksums': True})
    assert not result.get('failed'), result.get('msg')
    assert result['changed'] is True and result['flavour'] == 'sqlite'
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert result['artefact']['sha256'] == sha256(dest)
    inv = result['inventory']
    assert inv['rows'] == {'users': 5000, 'events': 0} or inv['rows'] == {'events': 0, 'users': 5000}
    assert set(inv['views']) == {'high'} and set(inv['triggers']) == {'users_guard'} and 'users_name' in inv['indexes']
    assert inv['_user_version'] == 7
    assert sorted(os.listdir(tmp_path)) == sorted(p for p in os.listdir(tmp_path) if not p.startswith('.'))

    target = tmp_path / 'live.sqlite'
    make_db(target, rows=10)
    os.chmod(target, 0o640)
    owner = pwd.getpwnam('nobody') if os.geteuid() == 0 else None
    if owner:
        os.chown(target, owner.pw_uid, owner.pw_gid)
    old_digest = sha256(target)
    restored = run_module('sqlite_restore', {'path': str(target), 'src': str(dest), 'checksums': True,
                                             'expected_inventory': inv})
    assert not restored.get('failed'), restored.get('msg')
    assert restored['verified'] is True and restored['database_created'] is False
    assert restored['backup_file'] == str(target) + '.bak'
    assert sha256(tmp_path / 'live.sqlite.bak') == old_digest
    st = os.stat(target)
    assert stat.S_IMODE(st.st_mode) == 0o640
    if owner:
        assert (st.st_uid, st.st_gid) == (owner.pw_uid, owner.pw_gid)
    conn = sqlite3.connect(str(target))
    assert conn.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'
    assert conn.execute('SELECT COUNT(*) FROM users').fetchone()[0] == 5000
    conn.close()
    assert not [p for p in os.listdir(tmp_path) if 'appvault' in p or p.endswith('.partial')]


@pytest.mark.parametrize('compression', ['gzip', 'none'])
def test_other_compression_and_no_backup(tmp_path, compression):
    src = tmp_path / 'a.db'
    make_db(src, rows=300, wal=False)
    dest = tmp_path / ('a.db.%s' % compression)
    result = run_module('sqlite_dump', {'path': str(src), 'dest': str(dest), 'compression': compression})
    assert not result.get('failed'), result.get('msg')
    target = tmp_path / 'b.db'
    make_db(target, rows=1, wal=False)
    restored = run_module('sqlite_restore', {'path': str(target), 'src': str(dest), 'backup': False,
                                             'expected_inventory': result['inventory']})
    assert not restored.get('failed'), restored.get('msg')
    assert restored['source']['compression'] == compression and restored['backup_file'] is None
    assert not (tmp_path / 'b.db.bak').exists()


def test_backup_while_another_process_writes(tmp_path):
    src = tmp_path / 'busy.sqlite'
    make_db(src, rows=2000)
    started = tmp_path / 'started'
    writer = subprocess.Popen([sys.executable, '-c', WRITER, str(src), str(started)])
    try:
        deadline = time.time() + 20
        while not started.exists() and time.time() < deadline:
            time.sleep(0.05)
        assert started.exists(), 'the writer did not start'
        dest = tmp_path / 'busy.sqlite.zst'
        result = run_module('sqlite_dump', {'path': str(src), 'dest': str(dest), 'checksums': True})
        assert not result.get('failed'), result.get('msg')
        assert result['inventory']['rows']['events'] >= 50
        assert writer.poll() is None, 'the writer was disturbed'
    finally:
        writer.terminate()
        writer.wait()
    # the copy is one consistent snapshot: it restores, passes integrity_check and equals its own inventory
    restored = run_module('sqlite_restore', {'path': str(tmp_path / 'copy.sqlite'), 'src': str(dest), 'checksums': True,
                                             'expected_inventory': result['inventory']})
    assert not restored.get('failed'), restored.get('msg')
    assert restored['verified'] is True and restored['database_created'] is True
    assert stat.S_IMODE(os.stat(tmp_path / 'copy.sqlite').st_mode) == 0o600
    live = sqlite3.connect(str(src))
    assert live.execute('SELECT COUNT(*) FROM events').fetchone()[0] >= result['inventory']['rows']['events']
    live.close()


def corrupt_copy(src, out):
    data = bytearray(src.read_bytes())
    page = 4096
    for offset in range(page * 2, min(len(data), page * 6)):
        data[offset] = (data[offset] * 7 + 13) % 256
    out.write_bytes(bytes(data))


def test_corrupt_backup_is_refused_and_nothing_changes(tmp_path):
    good = tmp_path / 'good.db'
    make_db(good, rows=3000, wal=False)
    broken = tmp_path / 'broken.db'
    corrupt_copy(good, broken)
    packed = tmp_path / 'broken.db.zst'
    subprocess.run(['zstd', '-q', str(broken), '-o', str(packed)], check=True)
    target = tmp_path / 'target.db'
    make_db(target, rows=5, wal=False)
    before = sha256(target)
    for src in (broken, packed):
        failed = run_module('sqlite_restore', {'path': str(target), 'src': str(src)})
        assert failed.get('failed'), src
        assert 'integrity' in failed['msg'] or 'malformed' in failed['msg'] or 'not a usable' in failed['msg'], failed['msg']
        assert sha256(target) == before
        assert not (tmp_path / 'target.db.bak').exists()
        assert not [p for p in os.listdir(tmp_path) if 'appvault' in p]
    truncated = tmp_path / 'cut.db.zst'
    data = packed.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    failed = run_module('sqlite_restore', {'path': str(target), 'src': str(truncated)})
    assert failed.get('failed') and 'corrupt or truncated' in failed['msg']
    garbage = tmp_path / 'garbage.bin'
    garbage.write_bytes(b'hello, not a database' * 10)
    failed = run_module('sqlite_restore', {'path': str(target), 'src': str(garbage)})
    assert failed.get('failed') and 'neither an SQLite database' in failed['msg']
    assert sha256(target) == before


def test_mismatching_inventory_changes_nothing(tmp_path):
    src = tmp_path / 'x.db'
    make_db(src, rows=100, wal=False)
    dest = tmp_path / 'x.db.zst'
    result = run_module('sqlite_dump', {'path': str(src), 'dest': str(dest)})
    inv = dict(result['inventory'])
    inv['rows'] = dict(inv['rows'], users=99)
    target = tmp_path / 'y.db'
    make_db(target, rows=1, wal=False)
    before = sha256(target)
    failed = run_module('sqlite_restore', {'path': str(target), 'src': str(dest), 'expected_inventory': inv})
    assert failed.get('failed') and 'rows.users' in failed['msg'] and failed['differences']
    assert sha256(target) == before


def test_bad_input(tmp_path):
    missing = run_module('sqlite_dump', {'path': str(tmp_path / 'nope.db'), 'dest': str(tmp_path / 'o.zst')})
    assert missing.get('failed') and 'does not exist' in missing['msg']
    not_db = tmp_path / 'text.db'
    not_db.write_text('plain text')
    refused = run_module('sqlite_dump', {'path': str(not_db), 'dest': str(tmp_path / 'o.zst')})
    assert refused.get('failed') and 'not an SQLite 3 database' in refused['msg']
    src = tmp_path / 'ok.db'
    make_db(src, rows=10, wal=False)
    exists = tmp_path / 'exists.zst'
    exists.write_text('keep')
    refused = run_module('sqlite_dump', {'path': str(src), 'dest': str(exists)})
    assert refused.get('failed') and 'force: true' in refused['msg'] and exists.read_text() == 'keep'
    nodir = run_module('sqlite_dump', {'path': str(src), 'dest': str(tmp_path / 'no' / 'o.zst')})
    assert nodir.get('failed') and 'does not exist' in nodir['msg']
    assert not (tmp_path / 'o.zst').exists()


def test_check_mode(tmp_path):
    src = tmp_path / 'c.db'
    make_db(src, rows=10, wal=False)
    dest = tmp_path / 'c.db.zst'
    predicted = run_module('sqlite_dump', {'path': str(src), 'dest': str(dest)}, check=True)
    assert not predicted.get('failed') and predicted['changed'] is True and not dest.exists()
    assert not run_module('sqlite_dump', {'path': str(src), 'dest': str(dest)}).get('failed')
    target = tmp_path / 'new.db'
    predicted = run_module('sqlite_restore', {'path': str(target), 'src': str(dest)}, check=True)
    assert not predicted.get('failed'), predicted.get('msg')
    assert predicted['changed'] is True and predicted['database_created'] is True and not target.exists()
    assert not [p for p in os.listdir(tmp_path) if 'appvault' in p]


def test_disk_full(tmp_path):
    src = tmp_path / 'big.db'
    make_db(src, rows=20000, wal=False)
    small = tmp_path / 'small'
    small.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(small)], check=False).returncode:
        pytest.skip('cannot mount a tmpfs here')
    try:
        failed = run_module('sqlite_dump', {'path': str(src), 'dest': str(small / 'big.db'), 'compression': 'none'})
        assert failed.get('failed') and 'full' in failed['msg'].lower(), failed.get('msg')
        assert os.listdir(small) == []
    finally:
        subprocess.run(['umount', str(small)], check=False)
