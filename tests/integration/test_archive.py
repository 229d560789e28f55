"""archive_create / archive_restore / backup_info / backup_prune / backup_file on real files, through ansible-playbook.

Real GNU tar, zstd and age; hostile archives are built here with Python's tarfile.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import random
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from ansible_collections.appvault.backup.plugins.module_utils import _archive
from harness.common import cached_bytes, delalloc_files, run_module

UTC = datetime.timezone.utc
OWNERS = [(0, 0), (1000, 1000), (1001, 1002), (12345, 54321)]
FILE_MODES = [0o644, 0o600, 0o640, 0o755, 0o444]
DIR_MODES = [0o755, 0o750, 0o700]
BASE_NS = 1_600_000_000_123_456_789


def snapshot(root):
    """(relpath -> (type, mode, uid, gid, size, sha256, link target, mtime_ns, nlink)) of a whole tree."""
    out = {}
    root = Path(root)
    stack = [root]
    while stack:
        path = stack.pop()
        st = os.lstat(path)
        rel = str(path.relative_to(root))
        if stat.S_ISDIR(st.st_mode):
            stack.extend(path.iterdir())
            out[rel] = ('dir', stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, None, None, None, st.st_mtime_ns, None)
        elif stat.S_ISLNK(st.st_mode):
            out[rel] = ('symlink', None, st.st_uid, st.st_gid, None, None, os.readlink(path), st.st_mtime_ns, None)
        elif stat.S_ISREG(st.st_mode):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[rel] = ('file', stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size, digest, None, st.st_mtime_ns, st.st_nlink)
        else:
            out[rel] = ('special', stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, None, None, None, None, None)
    return out


def build_storage(root, dirs=100, per_dir=100):
    """10k files: Japanese names, modes, owners, symlinks (file, dir, dangling), a hardlink, empty dirs, ns mtimes."""
    rng = random.Random(4)
    root.mkdir()
    all_dirs = [root]
    for d in range(dirs):
        dpath = root / ('dir%03d' % d if d % 10 else '添付ファイル%03d' % d)
        dpath.mkdir()
        all_dirs.append(dpath)
        for f in range(per_dir):
            path = dpath / ('f%03d.bin' % f if f % 7 else 'ファイル 名前_%03d.txt' % f)
            path.write_bytes(rng.randbytes(rng.randint(0, 1500)))
            os.chmod(path, FILE_MODES[(d + f) % len(FILE_MODES)])
            os.chown(path, *OWNERS[(d + f) % len(OWNERS)])
            os.utime(path, ns=(BASE_NS, BASE_NS + d * 1000 + f))
    (root / 'empty').mkdir()
    (root / 'dir001' / 'empty-inner').mkdir()
    all_dirs += [root / 'empty', root / 'dir001' / 'empty-inner']
    os.symlink('dir001/f001.bin', root / 'link-to-file')
    os.symlink('dir002', root / 'link-to-dir')
    os.symlink('does-not-exist', root / 'dangling')
    os.symlink('../添付ファイル010/ファイル 名前_000.txt', root / 'dir003' / 'リンク')
    os.lchown(root / 'link-to-file', 1000, 1000)
    os.link(root / 'dir004' / 'f001.bin', root / 'hardlink.bin')
    for index, dpath in enumerate(reversed(all_dirs)):
        os.chmod(dpath, DIR_MODES[index % len(DIR_MODES)])
        os.chown(dpath, *OWNERS[index % len(OWNERS)])
        os.utime(dpath, ns=(BASE_NS, BASE_NS - index))
    return root


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp('archive')
    storage = build_storage(base / 'storage')
    dump = base / 'dumps' / 'main.pgc.zst'
    dump.parent.mkdir()
    dump.write_bytes(random.Random(1).randbytes(400_000))  # large enough to be hashed in a worker thread
    config = base / '.env'
    config.write_text('APP_KEY=base64:xyz\n')
    os.chmod(config, 0o640)
    return dict(base=base, storage=storage, dump=dump, config=config, backups=base / 'backups')


def create_args(env, **extra):
    args = {
        'dest_dir': str(env['backups']),
        'app': {'name': 'exment', 'profile': 'exment', 'version': '6.1.2'},
        'databases': [{'id': 'main', 'path': str(env['dump']), 'engine': 'postgresql', 'server_version': '15.8',
                       'tool_version': '15.8', 'options': {'format': 'custom'},
                       'inventory': {'rows': {'public.users': 3, 'public.日本語': 7}}}],
        'paths': [{'id': 'attachments', 'path': str(env['storage'])},
                  {'id': 'config', 'path': str(env['config'])},
                  {'id': 'logs', 'path': str(env['base'] / 'no-logs'), 'optional': True}],
    }
    args.update(extra)
    return args


@pytest.fixture(scope='module')
def created(env):
    result = run_module('archive_create', create_args(env, label='full'))
    assert not result.get('failed'), result.get('msg')
    return result


def test_create_writes_one_private_archive_with_manifest_first(env, created):
    path = Path(created['path'])
    # first, before anything reads it: the archive on disk is not left in the page cache (util-linux fincore)
    resident = cached_bytes(path)
    assert resident < created['size'] // 8, '%d of %d bytes of the archive still cached' % (resident, created['size'])
    assert path.name.startswith('exment-') and path.name.endswith('-full.tar.zst')
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(env['backups']).st_mode) == 0o700
    assert sorted(os.listdir(env['backups'])) == [path.name, path.name + '.sha256']
    check = subprocess.run(['sha256sum', '-c', path.name + '.sha256'], cwd=env['backups'], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    listing = subprocess.run(['tar', '-t', '--zstd', '-f', str(path)], capture_output=True, text=True, check=True).stdout.split('\n')
    assert listing[:3] == ['manifest.json', 'db/main.pgc.zst', 'files/attachments/']
    manifest = created['manifest']
    assert manifest['format_version'] == 1 and manifest['app']['version'] == '6.1.2'
    assert manifest['databases'][0]['inventory']['rows']['public.日本語'] == 7
    assert manifest['databases'][0]['sha256'] == hashlib.sha256(env['dump'].read_bytes()).hexdigest()
    attachments = manifest['paths'][0]
    assert (attachments['files'], attachments['symlinks'], attachments['hardlinks']) == (10000, 4, 1)
    assert manifest['paths'][2]['present'] is False
    assert any('no-logs' in w for w in created['warnings'])
    assert created['members'] == 10000 + 4 + 1 + 103 + 1 + 1  # files, symlinks, hardlink, dirs, dump, .env


def test_round_trip_is_exact(env, created, tmp_path):
    dest = tmp_path / 'restored' / 'storage'
    result = run_module('archive_restore', {'src': created['path'], 'path_dest': {'attachments': str(dest), 'config': str(tmp_path / 'env')},
                                            'dumps_dest': str(tmp_path / 'dumps')})
    assert not result.get('failed'), result.get('msg')
    assert result['checksum'] == 'ok'
    before, after = snapshot(env['storage']), snapshot(dest)
    assert len(after) == len(before) > 10000
    assert after == before
    assert (tmp_path / 'env').read_text() == env['config'].read_text()
    dumped = Path(result['databases']['main']['path'])
    assert dumped == tmp_path / 'dumps' / 'main.pgc.zst'
    assert dumped.read_bytes() == env['dump'].read_bytes()
    assert result['databases']['main']['inventory']['rows']['public.users'] == 3
    assert result['paths']['attachments']['previous'] is None
    # Restoring again changes no path: the destination already matches.
    again = run_module('archive_restore', {'src': created['path'], 'paths': ['attachments'], 'databases': [],
                                           'path_dest': {'attachments': str(dest)}})
    assert again['changed'] is False and again['paths']['attachments']['counts'] == {'added': 0, 'changed': 0, 'removed': 0}


def test_restored_files_are_on_disk_before_they_are_swapped_in(env, created, tmp_path):
    # A crash right after the swap must not leave empty files where the app's were: the restored tree is written
    # out (syncfs) before its rename. Written but unsynced files on ext4 have delayed-allocation extents.
    if subprocess.run(['stat', '-f', '-c', '%T', str(tmp_path)], capture_output=True, text=True, check=True).stdout.strip() != 'ext2/ext3':
        pytest.skip('needs ext4 (delayed allocation shows unsynced data)')
    probe = tmp_path / 'probe.bin'
    probe.write_bytes(os.urandom(300000))
    assert delalloc_files([probe]) == [str(probe)]  # the check sees data not yet on disk
    dest = tmp_path / 'restored'
    result = run_module('archive_restore', {'src': created['path'], 'paths': ['attachments'], 'databases': [],
                                            'path_dest': {'attachments': str(dest)}})
    assert not result.get('failed'), result.get('msg')
    files = [p for p in dest.rglob('*') if p.is_file() and not p.is_symlink() and p.stat().st_size]
    assert len(files) > 9000  # the non-empty regular files of the 10k-file tree
    assert delalloc_files(files) == []
    # and, once on disk, out of the page cache: a restore does not push the database servers' cache out
    size = sum(p.stat().st_size for p in files)
    resident = cached_bytes(*files)
    assert resident < size // 8, '%d of %d bytes of the restored files still cached' % (resident, size)


def test_restore_check_diff_then_swap_keeping_previous(env, created, tmp_path):
    dest = tmp_path / 'storage'
    subprocess.run(['cp', '-a', str(env['storage']), str(dest)], check=True)
    (dest / 'dir001' / 'f001.bin').write_bytes(b'changed')
    (dest / 'new-file.txt').write_text('new')
    os.unlink(dest / 'dir002' / 'f002.bin')
    modified = snapshot(dest)
    args = {'src': created['path'], 'paths': ['attachments'], 'databases': [], 'path_dest': {'attachments': str(dest)}, 'keep_previous': 1}
    check = run_module('archive_restore', args, check=True, extra_args=['--diff'])
    assert not check.get('failed'), check.get('msg')
    info = check['paths']['attachments']
    assert check['changed'] is True
    assert info['added'] == ['dir002/f002.bin'] and info['removed'] == ['new-file.txt'] and info['changed_entries'] == ['dir001/f001.bin']
    assert 'new-file.txt' in check['diff'][0]['before'] and 'dir002/f002.bin' in check['diff'][0]['after']
    assert snapshot(dest) == modified  # check mode changed nothing
    done = run_module('archive_restore', args)
    assert not done.get('failed'), done.get('msg')
    previous = Path(done['paths']['attachments']['previous'])
    assert previous.name.startswith('storage-bak-')
    assert snapshot(previous) == modified
    assert snapshot(dest) == snapshot(env['storage'])
    # A second forced restore moves the current copy aside too; keep_previous=1 removes the older copy.
    forced = run_module('archive_restore', dict(args, force=True))
    assert not forced.get('failed'), forced.get('msg')
    assert forced['paths']['attachments']['removed_copies'] == [str(previous)]
    assert [p.name for p in tmp_path.iterdir() if '-bak-' in p.name] == [Path(forced['paths']['attachments']['previous']).name]


# -- hostile archives ---------------------------------------------------------------
def _tarinfo(name, kind='file', data=b'', target=None):
    info = tarfile.TarInfo(name)
    info.mtime = 1_700_000_000
    info.uid = info.gid = 0
    info.mode = 0o644
    if kind == 'dir':
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif kind == 'symlink':
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
    elif kind == 'hardlink':
        info.type, info.linkname = tarfile.LNKTYPE, target
    elif kind == 'device':
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    else:
        info.size = len(data)
    return info


def _meta(info, data=b''):
    kind = {tarfile.DIRTYPE: 'dir', tarfile.SYMTYPE: 'symlink', tarfile.LNKTYPE: 'hardlink'}.get(info.type, 'file')
    meta = dict(type=kind, mode=info.mode, uid=0, gid=0, mtime=info.mtime)
    if kind == 'file':
        meta.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    if info.linkname:
        meta['target'] = info.linkname
    return meta


HOSTILE = {
    'tar-slip': ([('files/app/../../evil', 'file', b'evil', None)], '".." (path traversal)'),
    'absolute': ([('/tmp/appvault-evil', 'file', b'evil', None)], 'absolute'),
    'symlink-escape': ([('files/app/link', 'symlink', b'', '../../../etc')], 'points outside'),
    'symlink-absolute': ([('files/app/link', 'symlink', b'', '/etc/passwd')], 'points outside'),
    'hardlink-escape': ([('files/app/hl', 'hardlink', b'', '/etc/passwd')], 'hardlink'),
    'device': ([('files/app/null', 'device', b'', None)], 'device'),
    'duplicate': ([('files/app/ok.txt', 'file', b'second', None)], 'duplicate member'),
    'unlisted': ([('files/app/extra', 'file', b'x', None)], 'not listed in the manifest'),
    'outside-sets': ([('other/file', 'file', b'x', None)], 'belongs to no database or path'),
    'below-symlink': ([('files/app/sub', 'dir', b'', None), ('files/app/link', 'symlink', b'', 'sub'),
                       ('files/app/link/evil', 'file', b'evil', None)], 'lies below the symlink'),
}


def _pack(manifest, infos):
    """A zstd-compressed tar of ``manifest.json`` first, then ``infos`` ((TarInfo, data) pairs)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode='w', format=tarfile.PAX_FORMAT) as tar:
        data = json.dumps(manifest).encode()
        tar.addfile(_tarinfo('manifest.json', 'file', data), io.BytesIO(data))
        for info, payload in infos:
            tar.addfile(info, io.BytesIO(payload) if info.isreg() else None)
    return subprocess.run(['zstd', '-q', '-c'], input=raw.getvalue(), capture_output=True, check=True).stdout


def _write_with_sidecar(path, compressed, sidecar=None):
    """``compressed`` at ``path`` with its .sha256 sidecar (of ``compressed`` unless ``sidecar`` is given)."""
    path.write_bytes(compressed)
    Path(str(path) + '.sha256').write_text('%s  %s\n' % (sidecar or hashlib.sha256(compressed).hexdigest(), path.name))
    return path


def build_hostile(directory, case):
    """A zstd archive with a valid manifest and sidecar whose only flaw is the case's."""
    members = [('files/app', 'dir', b'', None), ('files/app/ok.txt', 'file', b'ok\n', None)]
    extra, _expected = HOSTILE.get(case, ([], None))
    members += extra
    table = {}
    infos = []
    for name, kind, data, target in members:
        info = _tarinfo(name, kind, data, target)
        infos.append((info, data))
        if case not in ('unlisted',) or name != 'files/app/extra':
            table[name] = _meta(info, data)
    if case == 'duplicate':
        table['files/app/ok.txt'] = _meta(infos[1][0], b'ok\n')
    if case == 'manifest-mismatch':
        table['files/app/ok.txt']['sha256'] = '0' * 64
    if case == 'manifest-missing-member':
        table['files/app/gone.txt'] = dict(type='file', size=1, sha256='1' * 64, mode=0o644, uid=0, gid=0, mtime=1_700_000_000)
    manifest = dict(format='appvault.backup', format_version=1, collection_version='0.1.0', created_at='2025-01-01T00:00:00Z',
                    app=dict(name='evil'), host={}, databases=[], paths=[dict(id='app', member='files/app', present=True)],
                    members=table)
    compressed = _pack(manifest, infos)
    path = Path(directory) / ('evil-%s.tar.zst' % case)
    if case == 'truncated':
        compressed = compressed[:len(compressed) // 2]
    sidecar = None
    if case == 'bit-flipped':
        sidecar = hashlib.sha256(compressed).hexdigest()
        middle = len(compressed) // 2
        compressed = compressed[:middle] + bytes([compressed[middle] ^ 0x01]) + compressed[middle + 1:]
    return _write_with_sidecar(path, compressed, sidecar)


EXPECTED = dict((case, expected) for case, (_members, expected) in HOSTILE.items())
EXPECTED.update({'manifest-mismatch': 'does not match its sha256', 'manifest-missing-member': 'missing from the archive',
                 'truncated': 'truncated or corrupt', 'bit-flipped': 'does not match its checksum file'})


@pytest.mark.parametrize('case', sorted(EXPECTED))
def test_hostile_archive_refused_with_nothing_changed(case, tmp_path):
    target = tmp_path / 'site' / 'app'
    target.mkdir(parents=True)
    (target / 'keep.txt').write_text('precious')
    archive = build_hostile(tmp_path, case)
    before = snapshot(tmp_path / 'site')
    result = run_module('archive_restore', {'src': str(archive), 'path_dest': {'app': str(target)}})
    assert result.get('failed'), result
    assert EXPECTED[case] in result['msg'], result['msg']
    assert 'nothing was changed' in result['msg']
    assert snapshot(tmp_path / 'site') == before
    assert not os.path.exists('/tmp/appvault-evil')


def test_nothing_is_written_through_an_allowed_external_symlink(tmp_path):
    # allow_external_symlinks lets a link point anywhere, never lets a member be written through it
    outside = tmp_path / 'outside'
    outside.mkdir()
    members = [('files/app', 'dir', b'', None), ('files/app/link', 'symlink', b'', str(outside)),
               ('files/app/link/evil', 'file', b'evil', None)]
    infos = [(_tarinfo(name, kind, data, target), data) for name, kind, data, target in members]
    manifest = dict(format='appvault.backup', format_version=1, collection_version='0.1.0', created_at='2025-01-01T00:00:00Z',
                    app=dict(name='evil'), host={}, databases=[], paths=[dict(id='app', member='files/app', present=True)],
                    members=dict((info.name, _meta(info, data)) for info, data in infos))
    archive = _write_with_sidecar(tmp_path / 'evil-through-link.tar.zst', _pack(manifest, infos))
    target = tmp_path / 'site' / 'app'
    target.mkdir(parents=True)
    result = run_module('archive_restore', {'src': str(archive), 'path_dest': {'app': str(target)}, 'allow_external_symlinks': True})
    assert result.get('failed') and "member 'files/app/link/evil' lies below the symlink 'files/app/link'" in result['msg'], result
    assert list(outside.iterdir()) == [] and sorted(p.name for p in target.parent.iterdir()) == ['app']
    assert not os.path.exists(tmp_path / 'evil')


def _archive_with_dump(directory, name, dump_members, flaw):
    """A sound zstd archive with one database dump (``dump_members``) and one path, but for ``flaw``."""
    members = list(dump_members) + [('files/app', 'dir', b'', None), ('files/app/ok.txt', 'file', b'ok\n', None)]
    table, infos = {}, []
    for member, kind, data, target in members:
        info = _tarinfo(member, kind, data, target)
        infos.append((info, data))
        table[member] = _meta(info, data)
    if flaw == 'path-sha256':
        table['files/app/ok.txt']['sha256'] = '0' * 64
    manifest = dict(format='appvault.backup', format_version=1, collection_version='0.1.0', created_at='2025-01-01T00:00:00Z',
                    app=dict(name='evil'), host={}, paths=[dict(id='app', member='files/app', present=True)], members=table,
                    databases=[dict(id='main', member=dump_members[0][0], engine='postgresql', present=True)])
    compressed = _pack(manifest, infos)
    return _write_with_sidecar(Path(directory) / name, compressed)


@pytest.mark.parametrize('flaw, expected', [
    ('path-sha256', 'does not match its sha256'),  # the dump is already written to the stage when the flaw shows
    ('dump-symlink', 'holds only files and directories'),
])
def test_dumps_written_while_verifying_are_gone_when_the_archive_is_refused(tmp_path, flaw, expected):
    dump = [('db/main', 'dir', b'', None), ('db/main/toc.dat', 'file', os.urandom(300000), None)]
    if flaw == 'dump-symlink':
        dump.append(('db/main/link', 'symlink', b'', 'toc.dat'))
    backups = tmp_path / 'backups'
    backups.mkdir()
    archive = _archive_with_dump(backups, 'evil-20250101T000000Z.tar.zst', dump, flaw)
    target = tmp_path / 'site' / 'app'
    target.mkdir(parents=True)
    (target / 'keep.txt').write_text('precious')
    before = snapshot(tmp_path / 'site')
    result = run_module('archive_restore', {'src': str(archive), 'path_dest': {'app': str(target)}})
    assert result.get('failed') and expected in result['msg'], result
    assert snapshot(tmp_path / 'site') == before
    assert sorted(p.name for p in backups.iterdir()) == [archive.name, archive.name + '.sha256']


def test_dumps_come_out_of_the_verifying_pass_exactly(tmp_path):
    payload = os.urandom(3 * 1024 * 1024 + 17)
    dump = [('db/main', 'dir', b'', None), ('db/main/toc.dat', 'file', payload, None), ('db/main/3001.dat', 'file', b'', None)]
    archive = _archive_with_dump(tmp_path, 'fine-20250101T000000Z.tar.zst', dump, None)
    target = tmp_path / 'site' / 'app'
    result = run_module('archive_restore', {'src': str(archive), 'path_dest': {'app': str(target)}})
    assert not result.get('failed'), result.get('msg')
    extracted = Path(result['databases']['main']['path'])
    assert extracted == tmp_path / 'fine-20250101T000000Z.dumps' / 'main'
    assert (extracted / 'toc.dat').read_bytes() == payload and (extracted / '3001.dat').read_bytes() == b''
    assert stat.S_IMODE((extracted / 'toc.dat').stat().st_mode) == 0o600
    assert not (extracted.parent / '.appvault-stage').exists()
    assert (target / 'ok.txt').read_text() == 'ok\n'


def test_missing_checksum_file_refused_unless_allowed(tmp_path):
    archive = build_hostile(tmp_path, 'none')
    os.unlink(str(archive) + '.sha256')
    dest = tmp_path / 'out'
    result = run_module('archive_restore', {'src': str(archive), 'path_dest': {'app': str(dest)}})
    assert result.get('failed') and 'no checksum file' in result['msg']
    assert not dest.exists()
    result = run_module('archive_restore', {'src': str(archive), 'path_dest': {'app': str(dest)}, 'require_checksum_file': False})
    assert not result.get('failed'), result.get('msg')
    assert result['checksum'] == 'missing' and (dest / 'ok.txt').read_text() == 'ok\n'


# -- a full disk --------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / 'disk'
    mount.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', str(mount)], check=True)
    yield mount
    subprocess.run(['umount', str(mount)], check=True)


def test_disk_full_during_create_leaves_nothing(small_disk, tmp_path):
    free = shutil.disk_usage(small_disk).free
    data = tmp_path / 'data'
    data.mkdir()
    # Passes the estimate (input size < free space) but the archive (plus headers, manifest, lock) does not fit.
    (data / 'blob').write_bytes(os.urandom(free - 100))
    result = run_module('archive_create', {'dest_dir': str(small_disk), 'app': {'name': 'full'}, 'paths': [{'id': 'data', 'path': str(data)}]})
    assert result.get('failed'), result
    assert 'No space left' in result['msg'], result['msg']
    assert os.listdir(small_disk) == []


def test_disk_full_during_extraction_changes_nothing(small_disk, tmp_path):
    """The files are written by a thread of their own: its 'No space left' ends the restore, names the file, and
    the stage goes; the current tree is untouched."""
    data = tmp_path / 'data'
    data.mkdir()
    for index in range(6):  # 3 MiB of incompressible files for a 2 MiB disk
        (data / ('part-%d.bin' % index)).write_bytes(os.urandom(512 * 1024))
    created = run_module('archive_create', {'dest_dir': str(tmp_path / 'backups'), 'app': {'name': 'full'},
                                            'paths': [{'id': 'data', 'path': str(data)}]})
    assert not created.get('failed'), created.get('msg')
    dest = small_disk / 'data'
    dest.mkdir()
    (dest / 'current.txt').write_text('the current tree\n')
    result = run_module('archive_restore', {'src': created['path'], 'path_dest': {'data': str(dest)}})
    assert result.get('failed'), result
    assert 'No space left' in result['msg'] and 'while restoring it' in result['msg'] and 'part-' in result['msg'], result['msg']
    assert sorted(os.listdir(small_disk)) == ['data'] and os.listdir(dest) == ['current.txt']


def test_not_enough_space_refused_before_writing(small_disk, tmp_path):
    data = tmp_path / 'data'
    data.mkdir()
    (data / 'blob').write_bytes(b'\0' * (3 * 1024 * 1024))
    result = run_module('archive_create', {'dest_dir': str(small_disk), 'app': {'name': 'full'}, 'paths': [{'id': 'data', 'path': str(data)}]})
    assert result.get('failed') and 'not enough free space' in result['msg'], result
    assert os.listdir(small_disk) == []


# -- special files, encryption, bad input ----------------------------------------------
def test_sockets_skipped_with_warning_and_bad_input_refused(tmp_path):
    import socket

    data = tmp_path / 'data'
    data.mkdir()
    (data / 'a.txt').write_text('a')
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(data / 'php.sock'))
    os.mkfifo(data / 'fifo')
    try:
        result = run_module('archive_create', {'dest_dir': str(tmp_path / 'b'), 'app': {'name': 'app'}, 'paths': [{'id': 'data', 'path': str(data)}]})
    finally:
        sock.close()
    assert not result.get('failed'), result.get('msg')
    assert any('php.sock is a socket; skipped' in w for w in result['warnings'])
    assert any('fifo is a FIFO; skipped' in w for w in result['warnings'])
    bad = run_module('archive_create', {'dest_dir': str(tmp_path / 'b'), 'label': 'ﾃｽﾄ', 'app': {'name': 'app'},
                                        'paths': [{'id': 'data', 'path': str(data)}]})
    assert bad.get('failed') and 'not allowed' in bad['msg']
    overlap = run_module('archive_create', {'dest_dir': str(tmp_path / 'b'), 'app': {'name': 'app'},
                                            'paths': [{'id': 'a', 'path': str(data)}, {'id': 'b', 'path': str(data / 'a.txt')}]})
    assert overlap.get('failed') and 'must not overlap' in overlap['msg']
    missing = run_module('archive_create', {'dest_dir': str(tmp_path / 'b'), 'app': {'name': 'app'},
                                            'paths': [{'id': 'a', 'path': str(tmp_path / 'nope')}]})
    assert missing.get('failed') and 'does not exist' in missing['msg']


def test_encrypted_archive(tmp_path):
    key = tmp_path / 'key.txt'
    subprocess.run(['age-keygen', '-o', str(key)], capture_output=True, check=True)
    public = subprocess.run(['age-keygen', '-y', str(key)], capture_output=True, text=True, check=True).stdout.strip()
    data = tmp_path / 'data'
    data.mkdir()
    (data / '秘密.txt').write_text('secret')
    backups = tmp_path / 'backups'
    result = run_module('archive_create', {'dest_dir': str(backups), 'app': {'name': 'app'}, 'compression': 'gzip',
                                           'paths': [{'id': 'data', 'path': str(data)}], 'recipients': [public]})
    assert not result.get('failed'), result.get('msg')
    archive = Path(result['path'])
    assert archive.name.endswith('.tar.gz.age')
    assert archive.read_bytes().startswith(b'age-encryption.org/')
    assert b'secret' not in archive.read_bytes()
    sidecar = json.loads(Path(result['manifest_file']).read_text())
    assert sidecar['members_omitted'] is True and 'members' not in sidecar
    assert public not in ' '.join(result['commands']) and '-R' in result['commands'][0]
    info = run_module('backup_info', {'path': str(backups), 'verify': True})
    assert info['latest'] == archive.name and info['backups'][0]['encrypted'] is True
    no_key = run_module('archive_restore', {'src': str(archive), 'path_dest': {'data': str(tmp_path / 'out')}})
    assert no_key.get('failed') and 'identity' in no_key['msg']
    done = run_module('archive_restore', {'src': str(archive), 'path_dest': {'data': str(tmp_path / 'out')}, 'identity': str(key)})
    assert not done.get('failed'), done.get('msg')
    assert (tmp_path / 'out' / '秘密.txt').read_text() == 'secret'


# -- the catalogue ------------------------------------------------------------------------
def make_backups(directory, src, days):
    """Archives made through the core (fast), one per given UTC datetime."""
    out = []
    for when in days:
        result = _archive.create(str(directory), {'name': 'exment', 'version': '6.1'}, [], [{'id': 'data', 'path': str(src)}], now=when)
        out.append(result['name'])
    return out


@pytest.fixture
def small_src(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    (src / 'a.txt').write_text('a')
    return src


def test_backup_info_lists_newest_first_and_checks_hand_dropped(tmp_path, small_src):
    backups = tmp_path / 'list'
    days = [datetime.datetime(2025, 1, d, 3, 0, tzinfo=UTC) for d in (1, 2, 3)]
    names = make_backups(backups, small_src, days)
    newest = backups / names[-1]
    # Hand-dropped: a copy without its checksum file, one with it, a broken one, Exment's own zip, a bit-flipped one.
    shutil.copy(backups / names[0], backups / 'uploaded.tar.zst')
    shutil.copy(backups / names[1], backups / 'uploaded-ok.tar.zst')
    shutil.copy(str(backups / names[1]) + '.sha256', backups / 'uploaded-ok.tar.zst.sha256')
    (backups / 'garbage.tar.zst').write_bytes(b'not an archive')
    (backups / 'exment-backup.zip').write_bytes(b'PK\x03\x04rest')
    (backups / 'notes.txt').write_text('hello')
    flipped = bytearray((backups / names[0]).read_bytes())
    flipped[len(flipped) // 2] ^= 1
    (backups / 'flipped.tar.zst').write_bytes(bytes(flipped))
    shutil.copy(str(backups / names[0]) + '.sha256', backups / 'flipped.tar.zst.sha256')
    result = run_module('backup_info', {'path': str(backups), 'verify': True})
    assert not result.get('failed'), result.get('msg')
    by_name = dict((b['name'], b) for b in result['backups'])
    assert result['latest'] == newest.name and result['latest_path'] == str(newest)
    valid = [b['name'] for b in result['backups'] if b['valid']]
    assert valid[:3] == [names[2], 'uploaded-ok.tar.zst', names[1]] or valid[:3] == [names[2], names[1], 'uploaded-ok.tar.zst']
    assert by_name[names[0]]['valid'] and by_name[names[0]]['app_version'] == '6.1' and by_name[names[0]]['checksum'] == 'ok'
    assert by_name['uploaded-ok.tar.zst']['valid'] is True
    assert not by_name['uploaded.tar.zst']['valid'] and 'no checksum file' in by_name['uploaded.tar.zst']['reason']
    assert not by_name['garbage.tar.zst']['valid'] and 'not an appvault.backup archive' in by_name['garbage.tar.zst']['reason']
    assert not by_name['exment-backup.zip']['valid'] and 'zip' in by_name['exment-backup.zip']['reason']
    assert not by_name['flipped.tar.zst']['valid'] and by_name['flipped.tar.zst']['checksum'] == 'mismatch'
    assert result['ignored'] == ['notes.txt']
    one = run_module('backup_info', {'archive': str(newest)})
    # the member table is checked and counted, not returned (a million files would make a result of hundreds of MB)
    manifest = json.loads(subprocess.run(['tar', '-xOf', str(newest), 'manifest.json'], check=True, capture_output=True).stdout)
    assert one['manifest'] == dict((k, v) for k, v in manifest.items() if k != 'members') | {'members_omitted': True, 'member_count': len(manifest['members'])}
    assert one['manifest']['member_count'] == len(manifest['members']) > 0 and one['backup']['valid'] is True


def test_latest_is_not_a_safety_snapshot(tmp_path, small_src):
    """A failed restore keeps its pre-restore snapshot, newer than the backup it tried: "latest" is still the backup."""
    backups = tmp_path / 'snap'
    backup = make_backups(backups, small_src, [datetime.datetime(2025, 1, 1, 3, 0, tzinfo=UTC)])[0]
    snapshot = _archive.create(str(backups), {'name': 'exment'}, [], [{'id': 'data', 'path': str(small_src)}], label='pre-restore',
                               now=datetime.datetime(2025, 1, 2, 3, 0, tzinfo=UTC))['name']
    result = run_module('backup_info', {'path': str(backups)})
    assert [b['name'] for b in result['backups']] == [snapshot, backup]
    assert result['latest'] == backup
    (backups / backup).unlink()
    (backups / (backup + '.sha256')).unlink()
    assert run_module('backup_info', {'path': str(backups)})['latest'] == snapshot, 'a snapshot alone is still restorable'


def test_backup_prune(tmp_path, small_src):
    backups = tmp_path / 'prune'
    days = [datetime.datetime(2025, 1, 1, tzinfo=UTC) + datetime.timedelta(hours=12 * i) for i in range(10)]
    names = make_backups(backups, small_src, days)
    (backups / 'broken.tar.zst').write_bytes(b'junk')
    pin = run_module('backup_file', {'path': str(backups / names[0]), 'pinned': True})
    assert pin['changed'] is True and pin['pinned'] is True
    plan = run_module('backup_prune', {'path': str(backups), 'keep_last': 2, 'keep_daily': 3}, check=True)
    assert not plan.get('failed'), plan.get('msg')
    # newest two, plus the newest of each of the 3 most recent days (5 Jan, 4 Jan, 3 Jan); the oldest is pinned.
    expected_kept = {names[9], names[8], names[7], names[5], names[0]}
    assert {k['name'] for k in plan['kept']} == expected_kept
    assert set(plan['removed']) == set(names) - expected_kept
    assert {s['name'] for s in plan['invalid']} == {'broken.tar.zst'}
    assert all((backups / n).exists() for n in names)  # check mode removed nothing
    done = run_module('backup_prune', {'path': str(backups), 'keep_last': 2, 'keep_daily': 3})
    assert done['changed'] is True and set(done['removed']) == set(plan['removed'])
    left = set(os.listdir(backups))
    assert left == set(expected_kept) | {n + '.sha256' for n in expected_kept} | {names[0] + '.pin', 'broken.tar.zst'}
    again = run_module('backup_prune', {'path': str(backups), 'keep_last': 2, 'keep_daily': 3})
    assert again['changed'] is False
    default = run_module('backup_prune', {'path': str(backups), 'keep_last': 0})
    assert {k['name'] for k in default['kept']} == {names[9], names[0]}  # the newest and the pinned one stay


def test_backup_file_rename_pin_delete_and_stale_lock(tmp_path, small_src):
    backups = tmp_path / 'files'
    names = make_backups(backups, small_src, [datetime.datetime(2025, 1, d, tzinfo=UTC) for d in (1, 2)])
    first = str(backups / names[0])
    for bad in ('ﾊﾞｯｸｱｯﾌﾟ', 'バックアップ', 'a b', 'x/y', '../up', '.hidden', 'a$b'):
        result = run_module('backup_file', {'path': first, 'rename_to': bad})
        assert result.get('failed'), bad
    assert sorted(os.listdir(backups)) == sorted(names + [n + '.sha256' for n in names])
    clash = run_module('backup_file', {'path': first, 'rename_to': names[1]})
    assert clash.get('failed') and 'already exists' in clash['msg']
    # A stale lock left by a dead process is taken over.
    dead = subprocess.Popen(['true'])
    dead.wait()
    (backups / '.appvault.lock').write_text('%d %s\n' % (dead.pid, os.uname().nodename))
    renamed = run_module('backup_file', {'backup_dir': str(backups), 'path': names[0], 'rename_to': 'before-upgrade_6.2', 'pinned': True})
    assert not renamed.get('failed'), renamed.get('msg')
    assert any('stale lock' in w for w in renamed['warnings'])
    assert renamed['name'] == 'before-upgrade_6.2.tar.zst' and renamed['pinned'] is True
    assert not (backups / '.appvault.lock').exists()
    check = subprocess.run(['sha256sum', '-c', 'before-upgrade_6.2.tar.zst.sha256'], cwd=backups, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert (backups / 'before-upgrade_6.2.tar.zst.pin').exists() and not (backups / (names[0] + '.sha256')).exists()
    info = run_module('backup_info', {'path': str(backups)})
    assert {b['name']: b['pinned'] for b in info['backups']} == {'before-upgrade_6.2.tar.zst': True, names[1]: False}
    refused = run_module('backup_file', {'path': renamed['path'], 'state': 'absent'})
    assert refused.get('failed') and 'pinned' in refused['msg']
    unpin = run_module('backup_file', {'path': renamed['path'], 'pinned': False})
    assert unpin['changed'] is True
    gone = run_module('backup_file', {'path': renamed['path'], 'state': 'absent'})
    assert gone['changed'] is True
    assert sorted(os.listdir(backups)) == sorted([names[1], names[1] + '.sha256'])
    again = run_module('backup_file', {'path': renamed['path'], 'state': 'absent'})
    assert again['changed'] is False
