"""KnownDigests: a dump's sha256, taken as it was written, reaches the manifest without a second read, and only
while the file is the one that was hashed."""

from __future__ import annotations

import hashlib
import os
import time

from ansible_collections.appvault.backup.plugins.module_utils import _archive

FAKE = 'f' * 64  # not the sha256 of anything written here: seen in a result only when the file was not read


def _source(path):
    return dict(kind='db', id='main', src=str(path), member='db/main.pgdump', entry={}, present=True)


def _described(path, known):
    entries = _archive.walk([_source(path)], {}, [])
    return [meta for _path, _member, _st, meta in _archive.describe(entries, 2, known)]


def test_a_recorded_digest_is_used_without_reading_the_file(tmp_path):
    dump = tmp_path / 'main.pgdump'
    dump.write_bytes(os.urandom(_archive.HASH_THREADED * 2))  # large enough for the threaded hash path
    known = _archive.KnownDigests()
    known.add(str(tmp_path / '.' / 'main.pgdump'), FAKE)  # recorded under another spelling of the same path
    assert len(known) == 1
    assert _described(dump, known)[0]['sha256'] == FAKE


def test_a_file_written_after_its_digest_was_recorded_is_hashed_again(tmp_path):
    dump = tmp_path / 'main.pgdump'
    dump.write_bytes(b'first version')
    known = _archive.KnownDigests()
    known.add(str(dump), FAKE)
    time.sleep(0.01)
    with open(dump, 'r+b') as fileobj:  # same size, same inode: only mtime and ctime move
        fileobj.write(b'FIRST')
    assert dump.stat().st_size == len(b'first version')
    assert known.get(str(dump), os.lstat(dump)) is None
    assert _described(dump, known)[0]['sha256'] == hashlib.sha256(b'FIRST version').hexdigest()


def test_without_a_recorded_digest_every_file_is_read(tmp_path):
    dump = tmp_path / 'main.pgdump'
    dump.write_bytes(b'x' * 1000)
    assert _described(dump, _archive.KnownDigests())[0]['sha256'] == hashlib.sha256(b'x' * 1000).hexdigest()
    assert _described(dump, None)[0]['sha256'] == hashlib.sha256(b'x' * 1000).hexdigest()
