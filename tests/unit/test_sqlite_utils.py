"""Unit tests of the SQLite adapter's helpers."""

from __future__ import annotations

import sqlite3

import pytest

from ansible_collections.appvault.backup.plugins.module_utils import _sqlite
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError


def test_detect_compression(tmp_path):
    db = tmp_path / 'a.db'
    sqlite3.connect(str(db)).execute('CREATE TABLE t (i)').connection.close()
    assert _sqlite.detect_compression(str(db)) == 'none'
    (tmp_path / 'z').write_bytes(_sqlite.ZSTD_MAGIC + b'rest')
    assert _sqlite.detect_compression(str(tmp_path / 'z')) == 'zstd'
    (tmp_path / 'g').write_bytes(b'\x1f\x8b\x08rest')
    assert _sqlite.detect_compression(str(tmp_path / 'g')) == 'gzip'
    (tmp_path / 'x').write_bytes(b'nothing')
    with pytest.raises(AppvaultError):
        _sqlite.detect_compression(str(tmp_path / 'x'))


def test_checksums_are_order_independent(tmp_path):
    rows = [(i, 'v%d' % i, bytes([i])) for i in range(50)]
    paths = []
    for name, order in (('a.db', rows), ('b.db', list(reversed(rows)))):
        path = tmp_path / name
        conn = sqlite3.connect(str(path))
        conn.execute('CREATE TABLE t (i, s, b)')
        conn.executemany('INSERT INTO t VALUES (?, ?, ?)', order)
        conn.commit()
        conn.close()
        paths.append(str(path))
    first, second = (_sqlite.inventory(p, checksums=True) for p in paths)
    assert first['checksums'] == second['checksums'] and first['rows'] == {'t': 50}


def test_connect_never_creates_a_file(tmp_path):
    with pytest.raises(AppvaultError):
        _sqlite.connect(str(tmp_path / 'missing.db'))
    assert not (tmp_path / 'missing.db').exists()
