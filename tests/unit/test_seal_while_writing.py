"""SealWhileWriting: the sha256 and the flush of a file computed while a real process writes it."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time

import pytest

from ansible_collections.appvault.backup.plugins.module_utils import _common, _runner
from harness.common import cached_bytes

WRITER = r'''
import os, sys, time
seed = sys.argv[1].encode()
for i in range(int(sys.argv[2])):
    block = (seed + b'%d' % i) * 40000
    sys.stdout.buffer.write(block)
    sys.stdout.buffer.flush()
    time.sleep(0.005)
'''


def test_facts_equal_a_hash_of_the_finished_file(tmp_path):
    path = tmp_path / 'out'
    with _common.SealWhileWriting(str(path)) as out:
        # a slow writer in pieces (the follower catches up and waits) through two pipelines in a row, as
        # mysql_dump writes its structure and its data into the same file
        _runner.pipeline([['python3', '-c', WRITER, 'a', '60'], ['cat']], stdout_fd=out.fd)
        _runner.pipeline([['python3', '-c', WRITER, 'b', '40']], stdout_fd=out.fd)
        facts = out.seal()
    data = path.read_bytes()
    assert data == b''.join((seed + b'%d' % i) * 40000 for seed, count in ((b'a', 60), (b'b', 40)) for i in range(count))
    assert facts == {'path': str(path), 'size': len(data), 'sha256': hashlib.sha256(data).hexdigest(), 'type': 'file'}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_many_flushes_and_an_empty_file(tmp_path, monkeypatch):
    monkeypatch.setattr(_common.SealWhileWriting, 'FLUSH_EVERY', 4096)
    monkeypatch.setattr(_common.SealWhileWriting, 'READ', 1000)
    path = tmp_path / 'out'
    with _common.SealWhileWriting(str(path)) as out:
        _runner.pipeline([['head', '-c', '300000', '/dev/urandom']], stdout_fd=out.fd)
        facts = out.seal()
    assert facts['size'] == 300000 and facts['sha256'] == _common.sha256_file(str(path))
    with _common.SealWhileWriting(str(tmp_path / 'empty')) as out:
        facts = out.seal()
    assert facts['size'] == 0 and facts['sha256'] == hashlib.sha256(b'').hexdigest()


def test_a_file_cut_back_behind_the_follower_is_an_error(tmp_path):
    path = tmp_path / 'out'
    with _common.SealWhileWriting(str(path)) as out:
        os.write(out.fd, b'x' * 100000)
        deadline = time.monotonic() + 10
        while out._size < 100000 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.ftruncate(out.fd, 10)
        with pytest.raises(_common.AppvaultError, match='changed size while it was hashed'):
            out.seal()
    assert out.fd is None


def test_a_failed_write_stops_the_follower_at_once(tmp_path):
    path = tmp_path / 'out'
    before = threading.active_count()
    with pytest.raises(_runner.CommandError):
        with _common.SealWhileWriting(str(path)) as out:
            _runner.pipeline([['sh', '-c', 'head -c 1000000 /dev/zero; exit 3']], stdout_fd=out.fd)
    assert out.fd is None
    assert threading.active_count() == before


@pytest.mark.parametrize('drop_cache', [True, False])
def test_drop_cache_leaves_what_is_on_disk_out_of_the_page_cache(tmp_path, monkeypatch, drop_cache):
    monkeypatch.setattr(_common.SealWhileWriting, 'FLUSH_EVERY', 1 << 20)
    path = tmp_path / 'out'
    size = 32 << 20
    with _common.SealWhileWriting(str(path), drop_cache=drop_cache) as out:
        _runner.pipeline([['head', '-c', str(size), '/dev/urandom']], stdout_fd=out.fd)
        facts = out.seal()
    resident = cached_bytes(path)  # before the check below reads the file back into the cache
    assert facts['size'] == size and facts['sha256'] == _common.sha256_file(str(path))
    if drop_cache:
        assert resident < size // 8, '%d of %d bytes still cached' % (resident, size)
    else:  # the same write without the option stays cached: the option is what drops it
        assert resident > size // 2, 'only %d of %d bytes cached' % (resident, size)


def test_drop_cached_drops_the_synced_regular_files_and_opens_nothing_else(tmp_path):
    # what archive restore does with its staged trees once they are on disk (_archive.write_out)
    tree = tmp_path / 'tree'
    (tree / 'sub').mkdir(parents=True)
    files = [tree / 'a.bin', tree / 'sub' / 'b.bin']
    for path in files:
        path.write_bytes(os.urandom(4 << 20))
    os.mkfifo(tree / 'fifo')  # opened for reading it would block until a writer came
    outside = tmp_path / 'outside.bin'
    outside.write_bytes(os.urandom(4 << 20))
    (tree / 'link').symlink_to(outside)
    os.sync()
    assert all(cached_bytes(path) > (2 << 20) for path in files + [outside])  # the fresh writes are cached
    assert _common.drop_cached([str(tree), str(tmp_path / 'missing')]) == 2
    assert [cached_bytes(path) for path in files] == [0, 0]
    assert cached_bytes(outside) > (2 << 20)  # the symlink was not followed
