"""How the archive names its members (tar's --transform expressions, run by the real GNU tar) and the file hash the
walk takes of every file."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile

import pytest

from ansible_collections.appvault.backup.plugins.module_utils import _archive, _common


def test_sha256_file_reads_every_byte_and_leaves_no_descriptor_open(tmp_path):
    sizes = [0, 1, 4095, _common.CHUNK, _common.CHUNK + 1, 3 * _common.CHUNK - 7]
    before = len(os.listdir('/proc/self/fd'))
    for size in sizes:
        path = tmp_path / ('f%d' % size)
        data = os.urandom(size)
        path.write_bytes(data)
        assert _common.sha256_file(str(path)) == hashlib.sha256(data).hexdigest(), size
    with pytest.raises(FileNotFoundError) as caught:
        _common.sha256_file(str(tmp_path / 'gone'))
    assert caught.value.filename == str(tmp_path / 'gone')
    assert len(os.listdir('/proc/self/fd')) == before


def test_each_source_and_only_its_own_names_get_its_member_name(tmp_path):
    # storage and storage2 share a prefix; the transforms must tell them apart, and keep a symlink's target as it is
    root = tmp_path / 'app'
    (root / 'storage' / 'sub').mkdir(parents=True)
    (root / 'storage2').mkdir()
    (root / 'storage' / 'sub' / 'a.txt').write_text('a')
    os.link(root / 'storage' / 'sub' / 'a.txt', root / 'storage' / 'b.txt')
    os.symlink(str(root / 'storage' / 'sub' / 'a.txt'), root / 'storage' / 'abs-link')
    (root / 'storage2' / 'c.txt').write_text('c')
    (root / '.env').write_text('KEY=1\n')
    (root / 'storage' / 'sub' / '.env').write_text('not the top one\n')
    transforms = [(str(root / 'storage'), 'files/storage'), (str(root / 'storage2'), 'files/other'),
                  (str(root / '.env'), 'files/env')]
    names = [root / 'storage', root / 'storage' / 'abs-link', root / 'storage' / 'b.txt', root / 'storage' / 'sub',
             root / 'storage' / 'sub' / '.env', root / 'storage' / 'sub' / 'a.txt', root / 'storage2',
             root / 'storage2' / 'c.txt', root / '.env']
    listing = tmp_path / 'list'
    listing.write_bytes(b''.join(os.fsencode(str(name)) + b'\0' for name in names))
    argv = _archive.tar_create_argv(str(listing), transforms)
    # a directory gets two expressions (itself, what is under it), a file one
    assert sum(1 for arg in argv if arg.startswith('--transform=')) == 5
    out = tmp_path / 'out.tar'
    with open(out, 'wb') as fileobj:
        subprocess.run(argv, stdout=fileobj, stderr=subprocess.PIPE, check=True)
    with tarfile.open(out) as tar:
        members = dict((info.name, info) for info in tar.getmembers())
    assert sorted(members) == ['files/env', 'files/other', 'files/other/c.txt', 'files/storage', 'files/storage/abs-link',
                               'files/storage/b.txt', 'files/storage/sub', 'files/storage/sub/.env',
                               'files/storage/sub/a.txt']
    # GNU tar stores the later name of an inode as a hard link to the first: its target is renamed too
    hard = [info for info in members.values() if info.islnk()]
    assert [(info.name, info.linkname) for info in hard] in (
        [('files/storage/sub/a.txt', 'files/storage/b.txt')], [('files/storage/b.txt', 'files/storage/sub/a.txt')])
    assert members['files/storage/abs-link'].linkname == str(root / 'storage' / 'sub' / 'a.txt')
