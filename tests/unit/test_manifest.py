"""The manifest schema of _manifest."""

from __future__ import annotations

import copy
import io
import json
import re
import tarfile
from pathlib import Path

import pytest

from ansible_collections.appvault.backup.plugins.module_utils import _manifest
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError

GOOD = {
    'format': 'appvault.backup', 'format_version': 1, 'collection_version': '0.1.0', 'created_at': '2025-01-02T03:04:05Z',
    'label': None, 'app': {'name': 'exment', 'profile': 'exment', 'version': '6.1.2'},
    'host': {'hostname': 'h', 'os': {'id': 'debian'}}, 'compression': {'method': 'zstd', 'level': 3}, 'encryption': None,
    'databases': [{'id': 'main', 'member': 'db/main.pgc.zst', 'engine': 'postgresql', 'server_version': '15.8',
                   'inventory': {'rows': {'public.users': 3}}}],
    'paths': [{'id': 'attachments', 'member': 'files/attachments', 'present': True, 'files': 1, 'bytes': 3}],
    'members': {
        'db/main.pgc.zst': {'type': 'file', 'size': 3, 'sha256': 'a' * 64, 'mode': 0o600, 'uid': 0, 'gid': 0, 'mtime': 1},
        'files/attachments': {'type': 'dir', 'mode': 0o755, 'uid': 0, 'gid': 0, 'mtime': 1},
        'files/attachments/l': {'type': 'symlink', 'target': 'x', 'mode': 0o777, 'uid': 0, 'gid': 0, 'mtime': 1},
    },
    'warnings': [],
}


def test_good_manifest_round_trips():
    assert _manifest.validate(GOOD) == []
    assert _manifest.loads(_manifest.dumps(GOOD), 'x') == GOOD


def _broken(change):
    manifest = copy.deepcopy(GOOD)
    change(manifest)
    return _manifest.validate(manifest)


@pytest.mark.parametrize('change, expected', [
    (lambda m: m.update(format='other'), 'format is'),
    (lambda m: m.update(format_version=99), 'newer than this collection reads'),
    (lambda m: m.pop('format_version'), 'format_version is missing'),
    (lambda m: m.update(created_at='yesterday'), 'not a UTC timestamp'),
    (lambda m: m.pop('app'), 'manifest.app is missing'),
    (lambda m: m['databases'].append(dict(m['databases'][0])), 'duplicate id'),
    (lambda m: m['databases'][0].pop('engine'), 'engine is missing'),
    (lambda m: m.pop('members'), 'members is missing'),
    (lambda m: m['members']['db/main.pgc.zst'].update(sha256='xyz'), 'needs size and sha256'),
    (lambda m: m['members']['files/attachments'].update(type='fifo'), 'no valid type'),
    (lambda m: m['members']['files/attachments/l'].pop('target'), 'needs a target'),
])
def test_schema_problems_are_named(change, expected):
    problems = _broken(change)
    assert any(expected in p for p in problems), problems


def test_loads_refuses_bad_json_and_bad_schema():
    with pytest.raises(AppvaultError, match='not valid JSON'):
        _manifest.loads(b'{', 'x')
    with pytest.raises(AppvaultError, match='invalid manifest'):
        _manifest.loads(b'{"format": "appvault.backup", "format_version": 1}', 'x')


@pytest.mark.parametrize('text', [_manifest.dumps(GOOD), json.dumps(GOOD).encode(), json.dumps(GOOD, indent='\t').encode()])
def test_without_members_is_the_manifest_less_its_member_table(text):
    # what a catalogue reads: everything but the member table, which is checked and counted as it is parsed
    summary = _manifest.loads(text, 'x', members=False)
    expected = dict((k, v) for k, v in GOOD.items() if k != 'members')
    assert summary == dict(expected, members_omitted=True, member_count=3)


def test_without_members_still_names_a_bad_member_and_bad_json():
    manifest = copy.deepcopy(GOOD)
    manifest['members']['files/attachments/l'] = {'type': 'symlink'}
    with pytest.raises(AppvaultError, match=re.escape("members['files/attachments/l'] needs a target")):
        _manifest.loads(_manifest.dumps(manifest), 'x', members=False)
    text = _manifest.dumps(GOOD).decode()
    for broken in (text[:-2], text.replace('"members": {', '"members": {,', 1), text + ' {}', '[1]', ''):
        with pytest.raises(AppvaultError, match='not valid JSON'):
            _manifest.loads(broken, 'x', members=False)
    with pytest.raises(AppvaultError, match=re.escape('manifest.members is missing')):
        _manifest.loads(json.dumps(dict((k, v) for k, v in GOOD.items() if k != 'members')), 'x', members=False)


def test_encrypted_sidecar_may_omit_members():
    public = copy.deepcopy(GOOD)
    public.pop('members')
    public['members_omitted'] = True
    assert _manifest.validate(public, members_required=False) == []
    assert _manifest.validate(public) != []


def test_collection_version_matches_galaxy():
    galaxy = (Path(__file__).resolve().parents[2] / 'galaxy.yml').read_text()
    assert re.search(r'^version: (\S+)$', galaxy, re.M).group(1) == _manifest.COLLECTION_VERSION


def test_checksum_file_round_trip(tmp_path):
    archive = tmp_path / 'a.tar.zst'
    archive.write_bytes(b'x')
    path = _manifest.write_checksum_file(str(archive), 'b' * 64)
    assert Path(path).read_text() == '%s  a.tar.zst\n' % ('b' * 64)
    assert _manifest.read_checksum_file(path) == 'b' * 64
    Path(path).write_text('garbage\n')
    with pytest.raises(AppvaultError, match='does not hold a sha256'):
        _manifest.read_checksum_file(path)


class _Pipe(object):
    """Bytes readable front to back only, as from a pipe: no seek, no tell."""

    def __init__(self, data):
        self.data = data

    def read(self, size=-1):
        size = len(self.data) if size is None or size < 0 else size
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk


def _tar_bytes(entries):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode='w', format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_open_tar_stream_reads_members_in_order_skipping_unread_data():
    # a long (pax) name, data of exactly one block, an empty file, data never read, and a last member after it
    entries = [('d/' + 'n' * 150, b'x' * 700), ('d/block', b'b' * 512), ('d/empty', b''), ('d/skipped', b's' * 3000),
               ('d/last', b'end')]
    tar = _manifest.open_tar_stream(_Pipe(_tar_bytes(entries)))
    seen = []
    while True:
        info = tar.next()
        if info is None:
            break
        data = None if info.name == 'd/skipped' else tar.extractfile(info).read()
        seen.append((info.name, info.size, data))
    assert seen == [(name, len(data), None if name == 'd/skipped' else data) for name, data in entries]


def test_open_tar_stream_refuses_to_seek_back():
    tar = _manifest.open_tar_stream(_Pipe(_tar_bytes([('a', b'1' * 2000), ('b', b'2')])))
    first = tar.next()
    assert tar.extractfile(first).read() == b'1' * 2000
    with pytest.raises(tarfile.StreamError, match='cannot seek back'):
        tar.extractfile(first).read()
