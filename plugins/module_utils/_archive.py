# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup archives: create (GNU tar -> zstd|gzip [-> age], atomic), verify, extract safely and swap into place.

Python decides what goes in and checks what comes out; GNU tar, zstd, gzip and age move the bytes.
The format is described in docs/archive-format.md.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import datetime
import decimal
import fnmatch
import functools
import grp
import hashlib
import json
import os
import pwd
import queue
import re
import shutil
import stat
import tarfile
import threading
import time

from ansible_collections.appvault.backup.plugins.module_utils import _catalog, _common, _manifest, _runner
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError

DELIM = '\x01'  # sed delimiter for tar --transform; such a byte is refused in source paths
BAK_RE = r'-bak-\d{8}T\d{6}Z(\.\d+)?$'
MAX_LISTED = 200
HASH_THREADED = 256 * 1024  # files this large are hashed in a worker thread


# -- sources ---------------------------------------------------------------------
def _ext(path):
    """The suffix of a dump's name from its first dot (``nocobase.pgc.zst`` -> ``.pgc.zst``), if it is a safe one."""
    base = os.path.basename(path.rstrip('/'))
    if '.' not in base[1:]:
        return ''
    ext = base[base.index('.', 1):]
    return ext if re.match(r'^(\.[A-Za-z0-9_-]+)+$', ext) else ''


def plan_sources(databases, paths, root=None, dest_dir=None):
    """Validate the database and path definitions; return (sources, warnings).

    Each source: dict(kind, id, src (absolute), member, entry (the caller's definition), present).
    """
    sources = []
    warnings = []
    ids = set()
    for db in databases or []:
        ident = _catalog.check_name(db.get('id') or '', 'database id')
        if ('db', ident) in ids:
            raise AppvaultError('database id %r is given twice' % ident)
        ids.add(('db', ident))
        src = db.get('path')
        if not src or not os.path.isabs(src):
            raise AppvaultError('database %r: path must be an absolute path to the dump file or directory, got %r' % (ident, src))
        src = os.path.normpath(src)
        if not os.path.lexists(src):
            raise AppvaultError('database %r: the dump %s does not exist' % (ident, src))
        if os.path.islink(src) or not (os.path.isfile(src) or os.path.isdir(src)):
            raise AppvaultError('database %r: %s is not a regular file or directory' % (ident, src))
        sources.append(dict(kind='db', id=ident, src=src, member='db/%s%s' % (ident, _ext(src)), entry=db, present=True))
    for item in paths or []:
        ident = _catalog.check_name(item.get('id') or '', 'path id')
        if ('files', ident) in ids:
            raise AppvaultError('path id %r is given twice' % ident)
        ids.add(('files', ident))
        src = item.get('path')
        if not src:
            raise AppvaultError('path %r has no path' % ident)
        if not os.path.isabs(src):
            if not root:
                raise AppvaultError('path %r: %s is relative and no root is set' % (ident, src))
            src = os.path.join(root, src)
        src = os.path.normpath(src)
        present = os.path.lexists(src)
        if not present:
            if not item.get('optional'):
                raise AppvaultError('path %r: %s does not exist (set optional: true if it may be missing)' % (ident, src))
            warnings.append('path %r: %s does not exist; recorded as absent (optional)' % (ident, src))
        sources.append(dict(kind='files', id=ident, src=src, member='files/%s' % ident, entry=item, present=present))
    present = [s for s in sources if s['present']]
    for source in present:
        if DELIM in source['src'] or '\n' in source['src']:
            raise AppvaultError('%s: control characters in the path are not supported' % source['src'])
    for one in present:
        for other in present:
            if one is not other and (one['src'] == other['src'] or other['src'].startswith(one['src'].rstrip('/') + '/')):
                raise AppvaultError('%s (%s) is inside %s (%s): sources must not overlap; exclude it or drop one'
                                    % (other['src'], other['id'], one['src'], one['id']))
    return sources, warnings


def _excluded(rel, name, patterns):
    for pattern in patterns:
        if '/' in pattern:
            if fnmatch.fnmatchcase(rel, pattern.strip('/')):
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def walk(sources, stats, warnings, skip=()):
    """Yield every entry the archive will hold, in archive order (no data read).

    An entry is (abs path, member name, lstat result, kind, hardlink target) where kind is file / dir / symlink /
    hardlink (a later name of an inode already listed, as GNU tar stores it; its target is the first name).
    Per-source counts go into ``stats``, messages into ``warnings``. Only the names of multiply linked inodes and
    the directories still to visit are held in memory, never the whole tree.
    """
    inodes = {}
    skip = set(os.path.normpath(p) for p in skip if p)
    for source in sources:
        counts = dict(files=0, dirs=0, symlinks=0, hardlinks=0, bytes=0, excluded=0, skipped=0)
        stats[(source['kind'], source['id'])] = counts
        if not source['present']:
            continue
        excludes = (source['entry'].get('exclude') or []) if source['kind'] == 'files' else []
        stack = [(source['src'], '')]
        while stack:
            path, rel = stack.pop()
            st = os.lstat(path)
            member = source['member'] + ('/' + rel if rel else '')
            mode = st.st_mode
            if path in skip:
                warnings.append('%s is the backup directory; not archived' % path)
                continue
            if stat.S_ISDIR(mode):
                yield path, member, st, 'dir', None
                counts['dirs'] += 1
                children = []
                for name in os.listdir(path):
                    child_rel = rel + '/' + name if rel else name
                    if _excluded(child_rel, name, excludes):
                        counts['excluded'] += 1
                        continue
                    children.append((os.path.join(path, name), child_rel))
                children.sort(reverse=True)  # the stack pops them in name order
                stack.extend(children)
            elif stat.S_ISREG(mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in inodes:
                    yield path, member, st, 'hardlink', inodes[key]
                    counts['hardlinks'] += 1
                else:
                    if st.st_nlink > 1:
                        inodes[key] = member
                    yield path, member, st, 'file', None
                    counts['files'] += 1
                    counts['bytes'] += st.st_size
            elif stat.S_ISLNK(mode):
                yield path, member, st, 'symlink', None
                counts['symlinks'] += 1
            else:
                kind = ('socket' if stat.S_ISSOCK(mode) else 'FIFO' if stat.S_ISFIFO(mode)
                        else 'character device' if stat.S_ISCHR(mode) else 'block device')
                warnings.append('%s is a %s; skipped' % (path, kind))
                counts['skipped'] += 1


class KnownDigests(object):
    """The sha256 of files taken before the archive's walk reaches them - a dump's, hashed as it was written - so the
    hash pass does not read them again.  ``get()`` gives a digest only while the file's inode, size, mtime and ctime
    are those it was recorded with (any write moves them); describe() hashes every other file itself."""

    def __init__(self):
        self._digests = {}

    def add(self, path, digest):
        path = os.path.normpath(path)
        self._digests[path] = (_common.file_identity(os.lstat(path)), digest)

    def get(self, path, st):
        found = self._digests.get(path)
        return found[1] if found and found[0] == _common.file_identity(st) else None

    def __len__(self):
        return len(self._digests)


def describe(entries, cores, known=None):
    """Yield (path, member, lstat, meta) for every entry in order, with the sha256 of every regular file.

    Files of HASH_THREADED bytes or more are hashed by ``cores`` threads (hashlib and file reads release the GIL)
    while the walk goes on; smaller ones in the walking thread, where a thread hop would cost more than the hash.
    A digest ``known`` (KnownDigests) still holds for is taken from there instead.  At most a few entries per core wait
    in memory.
    """
    window = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(max_workers=cores) as pool:
        for path, member, st, kind, target in entries:
            meta = dict(type=kind, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid, mtime=int(st.st_mtime))
            if kind == 'file':
                meta['size'] = st.st_size
                digest = known.get(path, st) if known is not None else None
                if digest:
                    meta['sha256'] = digest
                elif st.st_size >= HASH_THREADED and cores > 1:
                    meta['sha256'] = pool.submit(_common.sha256_file, path)
                else:
                    meta['sha256'] = _common.sha256_file(path)
            elif kind == 'symlink':
                meta['target'] = os.readlink(path)
            elif kind == 'hardlink':
                meta['target'] = target
            window.append((path, member, st, meta))
            while len(window) > 4 * cores:
                yield _hashed(window.popleft())
        while window:
            yield _hashed(window.popleft())


def _hashed(item):
    meta = item[3]
    if isinstance(meta.get('sha256'), concurrent.futures.Future):
        meta['sha256'] = meta['sha256'].result()
    return item


def member_table(entries):
    """The member table as a dict (tests and benchmarks; create() streams it to disk instead)."""
    return dict((member, meta) for _path, member, _st, meta in describe(entries, _common.cpu_count()))


class Spool(object):
    """The member table, tar's file list and the change-check records, written to files as the walk goes.

    create() holds no per-member data in memory: the manifest's member table is assembled from the spool file.
    """

    def __init__(self, secrets, roots):
        self.roots = roots
        self.count = 0
        self.tops = {}  # the member of each source itself (a database dump's type and sha256 go in the manifest)
        self.escaping = []
        self.escaping_count = 0
        self.members_path = secrets.write('members.json', '')
        self.list_path = secrets.write('members.list', '')
        self.check_path = secrets.write('members.check', '')

    def fill(self, described, first_paths=()):
        with open(self.members_path, 'wb') as members, open(self.list_path, 'wb') as names, \
                open(self.check_path, 'wb') as check:
            for path in first_paths:
                names.write(os.fsencode(path) + b'\0')
            for path, member, st, meta in described:
                members.write((b',' if self.count else b'') + b'\n  ' + _json(member) + b': ' + _json(meta))
                names.write(os.fsencode(path) + b'\0')
                if meta['type'] in ('file', 'hardlink'):
                    check.write(b'%d %d %d ' % (st.st_ino, st.st_size, st.st_mtime_ns) + os.fsencode(path) + b'\0')
                if member in self.roots:
                    self.tops[member] = meta
                if meta['type'] == 'symlink' and _link_escapes(member, meta['target'], _set_root(member, self.roots)):
                    self.escaping_count += 1
                    if len(self.escaping) < MAX_LISTED:
                        self.escaping.append((member, meta['target']))
                self.count += 1

    def write_manifest(self, path, header):
        """The manifest: ``header`` with the spooled member table as its ``members``."""
        head = _manifest.dumps(header)
        with open(path, 'wb') as out:
            out.write(head[:head.rindex(b'}')].rstrip() + b',\n "members": {')
            with open(self.members_path, 'rb') as members:
                shutil.copyfileobj(members, out, _common.CHUNK)
            out.write(b'\n }\n}\n')

    def changed(self):
        """Files whose size, mtime or inode differ from the walk's (they changed while they were archived)."""
        changed = []
        for record in _nul_records(self.check_path):
            ino, size, mtime_ns, path = record.split(b' ', 3)
            path = os.fsdecode(path)
            try:
                now = os.lstat(path)
            except OSError:
                changed.append(path)
                continue
            if (now.st_ino, now.st_size, now.st_mtime_ns) != (int(ino), int(size), int(mtime_ns)):
                changed.append(path)
        return changed


# json.dumps with options builds a new encoder per call: once per member name and once per member, 0.35-0.45 s of a
# 57k-member table, against 0.22-0.24 s through one encoder kept here (the same bytes).
_ENCODE = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode


def _json(value):
    return _ENCODE(value).encode('utf-8')


def _nul_records(path):
    tail = b''
    with open(path, 'rb') as fileobj:
        while True:
            chunk = fileobj.read(_common.CHUNK)
            if not chunk:
                break
            parts = (tail + chunk).split(b'\0')
            tail = parts.pop()
            yield from parts
    if tail:
        yield tail


def _set_root(name, roots):
    for root in roots:
        if name == root or name.startswith(root + '/'):
            return root
    return None


def _link_escapes(name, target, root):
    if root is None or not target or target.startswith('/'):
        return True
    resolved = os.path.normpath(os.path.join(os.path.dirname(name), target))
    return not (resolved == root or resolved.startswith(root + '/'))


# -- create -------------------------------------------------------------------
def _sed_escape(text):
    return re.sub(r'([\\.\[\]*^$])', r'\\\1', text)


def tar_create_argv(list_file, transforms):
    """tar's argv writing the names of ``list_file`` (absolute paths) under their members: each (src, member) of
    ``transforms`` renames ``src`` itself and, for a directory, every name under it.  Two plain prefix expressions
    rather than one with the group ``\\(/\\|$\\)``: GNU tar's regex engine matches the group several times slower
    (57k names: 0.5-0.7 CPU s of tar's against 0.2-0.3).  No member starts with ``/``, so once renamed a name matches
    no other expression."""
    argv = ['tar', '--create', '--file=-', '--format=posix', '--pax-option=delete=atime,delete=ctime',
            '--absolute-names', '--no-recursion', '--null', '--verbatim-files-from']
    for src, member in transforms:
        escaped = _sed_escape(src)
        argv.append('--transform=s%s^%s$%s%s%srhS' % (DELIM, escaped, DELIM, member, DELIM))
        if os.path.isdir(src):
            argv.append('--transform=s%s^%s/%s%s/%srhS' % (DELIM, escaped, DELIM, member, DELIM))
    argv.append('--files-from=%s' % list_file)
    return argv


def compressor_argv(compression, level, cores):
    if compression == 'zstd':
        level = 3 if level is None else level
        if not 1 <= level <= 19:
            raise AppvaultError('zstd level must be 1..19, got %d' % level)
        return ['zstd', '-q', '-T%d' % cores, '-%d' % level, '-c'], level
    level = 1 if level is None else level
    if not 1 <= level <= 9:
        raise AppvaultError('gzip level must be 1..9, got %d' % level)
    if shutil.which('pigz'):
        return ['pigz', '-p', str(cores), '-%d' % level, '-c'], level
    return ['gzip', '-%d' % level, '-c'], level


def create(dest_dir, app, databases, paths, root=None, label=None, dest=None, compression='zstd', level=None,
           recipients=None, check_mode=False, now=None, warn=None, known=None, mirror=None):
    """Write one archive; returns a result dict.  Nothing is left behind on failure.  ``known``: KnownDigests of
    files hashed before (see describe).  ``mirror``: a _transfer.Mirror that sends the archive elsewhere while it is
    written; its outcome is the result's ``sent`` (a failed mirror does not fail the archive)."""
    warn = warn or (lambda msg: None)
    started = time.monotonic()
    now = now or _catalog.utc_now()
    app = dict(app or {})
    if not app.get('name'):
        raise AppvaultError('app.name is required')
    encrypted = bool(recipients)
    if dest:
        dest = os.path.abspath(dest)
        dest_dir = os.path.dirname(dest)
        _catalog.check_name(os.path.basename(dest), 'archive name')
    else:
        if not dest_dir:
            raise AppvaultError('give dest_dir (the backup directory) or dest')
        dest_dir = os.path.abspath(dest_dir)
        dest = os.path.join(dest_dir, _catalog.archive_name(app['name'], now, label, compression, encrypted))
    sources, warnings = plan_sources(databases, paths, root, dest_dir)
    for text in warnings:
        warn(text)
    result = dict(changed=True, path=dest, name=os.path.basename(dest))
    if os.path.lexists(dest):
        raise AppvaultError('%s already exists; choose another name or label' % dest)
    stats = {}
    walk_warnings = []
    if check_mode:
        result['entries'] = sum(1 for _entry in walk(sources, stats, walk_warnings, skip=[dest_dir]))
        result['estimate'] = estimate = sum(counts['bytes'] for counts in stats.values())
        for text in walk_warnings:
            warn(text)
        if os.path.isdir(dest_dir) and _common.free_bytes(dest_dir) < estimate:
            raise AppvaultError('not enough free space in %s: about %d bytes needed, %d free'
                                % (dest_dir, estimate, _common.free_bytes(dest_dir)))
        return result
    _common.private_dir(dest_dir)
    free = _common.free_bytes(dest_dir)  # before the lock file takes its block
    cores = _common.cpu_count()
    compress, level = compressor_argv(compression, level, cores)
    with _catalog.Lock(dest_dir, timeout=30) as lock, _common.SecretDir() as secrets:
        if lock.recovered:
            warn('removed a stale lock left by a dead process (%s)' % lock.recovered)
            # Only the lock's holder writes a .partial here: the dead holder's is garbage (it may be GBs).
            for name in sorted(os.listdir(dest_dir)):
                stale = os.path.join(dest_dir, name)
                if name.startswith('.') and name.endswith('.partial') and os.path.isfile(stale) and not os.path.islink(stale):
                    os.unlink(stale)
                    warn('removed %s, left unfinished by the dead process' % name)
            free = _common.free_bytes(dest_dir)
        manifest_path = secrets.write('manifest.json', '')
        roots = [s['member'] for s in sources]
        # One pass: walk, hash (threads for large files) and spool the member table to disk.
        spool = Spool(secrets, roots)
        spool.fill(describe(walk(sources, stats, walk_warnings, skip=[dest_dir]), cores, known),
                   first_paths=[manifest_path])
        for text in walk_warnings:
            warn(text)
        warnings.extend(walk_warnings)
        result['entries'] = spool.count
        result['estimate'] = estimate = sum(counts['bytes'] for counts in stats.values())
        if free < estimate:
            raise AppvaultError('not enough free space in %s: about %d bytes needed, %d free' % (dest_dir, estimate, free))
        for name, target in spool.escaping:
            text = ('symlink %s -> %s points outside its path; archive_restore refuses it unless allow_external_symlinks'
                    % (name, target))
            warn(text)
            warnings.append(text)
        if spool.escaping_count > len(spool.escaping):
            warnings.append('%d more symlinks point outside their path' % (spool.escaping_count - len(spool.escaping)))
        manifest = build_manifest(app, now, label, sources, stats, spool.tops, compression, level, recipients, warnings)
        spool.write_manifest(manifest_path, manifest)
        partial = _common.partial_name(dest)
        side = _manifest.sidecars(dest)
        written = []
        transforms = [(manifest_path, _manifest.MANIFEST_MEMBER)] + [(s['src'], s['member']) for s in sources if s['present']]
        stages = [tar_create_argv(spool.list_path, transforms), compress]
        if encrypted:
            stages.append(['age', '--encrypt', '-R', secrets.write('recipients', '\n'.join(recipients) + '\n')])
        result['commands'] = [' | '.join(_runner.mask_argv(s) for s in stages) + ' > ' + partial]
        try:
            if mirror is not None:
                mirror.start(os.path.basename(dest))
            # The last stage writes the file itself (created 0600); a thread hashes and flushes it from the page
            # cache right behind the writer (no tee | sha256sum copy competing with zstd for the cores), and hands
            # what it read to the mirror.
            with _common.SealWhileWriting(partial, drop_cache=True, sink=mirror.write if mirror is not None else None) as out:
                try:
                    _runner.pipeline(stages, stdout_fd=out.fd)
                except _runner.CommandError as exc:
                    raise AppvaultError('writing %s failed: %s' % (dest, exc.msg), stages=exc.stages)
                digest = out.seal()['sha256']
            changed = spool.changed()
            if changed:
                raise AppvaultError('%d file(s) changed while they were archived (first: %s); nothing was written. '
                                    'Stop writes (maintenance mode) and run the backup again' % (len(changed), changed[0]))
            _manifest.write_checksum_file(dest, digest)
            written.append(side['checksum'])
            if encrypted:
                public = dict(manifest, members_omitted=True)
                tmp = _common.partial_name(side['manifest'])
                with open(tmp, 'wb') as fileobj:
                    fileobj.write(_manifest.dumps(public))
                _common.publish(tmp, side['manifest'])
                written.append(side['manifest'])
            _common.publish(partial, dest, sealed=True)
        except BaseException:
            if mirror is not None:
                mirror.close(remove=True)
            _common.remove_path(partial)
            for path in written:
                _common.remove_path(path)
            raise
    result.update(sha256=digest, size=os.path.getsize(dest), checksum_file=side['checksum'], members=spool.count,
                  manifest=manifest, duration=round(time.monotonic() - started, 3))
    if encrypted:
        result['manifest_file'] = side['manifest']
    if mirror is not None:
        result['sent'] = mirror.finish(digest)
    return result


def build_manifest(app, now, label, sources, stats, tops, compression, level, recipients, warnings):
    """The manifest without its member table; ``tops`` holds the member of each source itself."""
    databases = []
    paths = []
    for source in sources:
        counts = stats[(source['kind'], source['id'])]
        entry = source['entry']
        if source['kind'] == 'db':
            top = tops.get(source['member'], {})
            item = dict(id=source['id'], member=source['member'], source=source['src'], type=top.get('type'),
                        engine=entry.get('engine') or 'unknown', server_version=entry.get('server_version'),
                        tool_version=entry.get('tool_version'), options=entry.get('options') or {},
                        inventory=entry.get('inventory') or {}, files=counts['files'], bytes=counts['bytes'])
            if top.get('type') == 'file':
                item['sha256'] = top['sha256']
                item['size'] = top['size']
            databases.append(item)
        else:
            item = dict(id=source['id'], member=source['member'], source=source['src'], present=source['present'],
                        optional=bool(entry.get('optional')), exclude=list(entry.get('exclude') or []))
            item['type'] = tops.get(source['member'], {}).get('type')
            item.update(counts)
            paths.append(item)
    return dict(
        format=_manifest.FORMAT, format_version=_manifest.FORMAT_VERSION, collection_version=_manifest.COLLECTION_VERSION,
        created_at=_catalog.format_time(now), label=label or None,
        app=dict(name=app.get('name'), profile=app.get('profile') or 'generic', version=app.get('version')),
        host=_manifest.host_info(), compression=dict(method=compression, level=level),
        encryption=dict(method='age', recipients=len(recipients)) if recipients else None,
        databases=databases, paths=paths, warnings=list(warnings))


# -- verify -------------------------------------------------------------------
def _member_problem(name):
    if not name or name.startswith('/') or '\\' in name:
        return 'absolute or malformed member name'
    parts = name.split('/')
    if '..' in parts:
        return 'member name with ".." (path traversal)'
    if '' in parts or '.' in parts or any(ord(ch) < 32 for ch in name):
        return 'malformed member name'
    return None


def verify(archive, identity=None, require_checksum_file=True, allow_external_symlinks=False, extract=None, verified=None):
    """Check the whole file against its sidecar, and every member against the manifest.

    Returns the manifest.  Raises AppvaultError naming the first problem found (a whole file that does not match
    its sidecar before anything else).  Read-only, except that ``extract(manifest)`` may return {member root:
    Target}: the members under those roots are then written below their stage, without their first path component,
    by the same pass that hashes them (see _StageWriter); the caller removes the stages when this raises.  The whole
    file's sha256 is computed by a thread beside that pass (the file is read twice, at the same time, not one pass
    after the other); until it is known, what the pass wrote stays in the stages (a Target's ``ready`` may read a
    staged dump whose own sha256 matched, into something the caller drops if this raises).

    ``verified``: dict(sha256, identity) of a check of the whole file against its sidecar moments before (backup_info
    with verify: its ``sha256`` and ``verified_identity``). While the sidecar still holds that sha256 and the file's
    identity (_common.file_identity) is unchanged, the whole file is not hashed again; every member still is.
    """
    side = _manifest.sidecars(archive)
    trusted = False
    if os.path.exists(side['checksum']):
        expected = _manifest.read_checksum_file(side['checksum'])
        trusted = _common.still_verified(verified, expected, archive)
        if trusted:
            whole = _common.done_future(expected)
        else:
            whole = _common.in_background(_common.sha256_file, archive)
    elif require_checksum_file:
        raise AppvaultError('%s has no checksum file %s; nothing was changed (set require_checksum_file: false to rely on '
                            'the per-member checksums only)' % (archive, side['checksum']))
    else:
        whole = None

    def check_whole():
        if whole is not None and whole.result() != expected:
            raise AppvaultError('%s does not match its checksum file %s (expected %s, got %s): the archive is corrupt or was modified; '
                                'nothing was changed' % (archive, side['checksum'], expected, whole.result()))

    try:
        manifest = _verify_members(archive, identity, allow_external_symlinks, extract)
    except AppvaultError:
        check_whole()  # a corrupt file is what to report, not the member it broke
        raise
    check_whole()
    manifest['_checksum'] = 'ok' if whole is not None else 'missing'
    if trusted:
        manifest['_trusted'] = True
    return manifest


def _verify_members(archive, identity, allow_external_symlinks, extract):
    """The pass of verify() over the archive's members; returns the manifest."""
    stages = _manifest.decompress_stages(archive, identity)
    where = os.path.basename(archive)

    def refuse(text):
        raise AppvaultError('%s: %s; nothing was changed' % (where, text))

    try:
        with _runner.Stream(stages, stdin_path=archive) as stream, contextlib.ExitStack() as stack:
            try:
                tar = _manifest.open_tar_stream(stream.stdout)
                first = tar.next()
                if first is None or first.name != _manifest.MANIFEST_MEMBER or not first.isreg():
                    refuse('the first member is not %s' % _manifest.MANIFEST_MEMBER)
                manifest = _manifest.loads(tar.extractfile(first).read(), where)
                members = manifest['members']
                roots = [e['member'] for e in manifest['databases'] + manifest['paths'] if e.get('present', True)]
                writer = _StageWriter(extract(manifest) if extract else {})
                stack.callback(writer.stop)
                seen = {}
                links = set()  # symlink members: nothing may lie below one (writing it would go through the link)
                while True:
                    info = tar.next()
                    if info is None:
                        break
                    tar.members = []  # constant memory: the stream is read once, nothing is looked up later
                    name = info.name
                    problem = _member_problem(name)
                    if problem:
                        refuse('%s: %r' % (problem, name))
                    if name in seen or name == _manifest.MANIFEST_MEMBER:
                        refuse('duplicate member %r' % name)
                    parent = name
                    while links and '/' in parent:
                        parent = parent.rsplit('/', 1)[0]
                        if parent in links:
                            refuse('member %r lies below the symlink %r' % (name, parent))
                    root = _set_root(name, roots)
                    if root is None:
                        refuse('member %r belongs to no database or path of the manifest' % name)
                    meta = members.get(name)
                    if meta is None:
                        refuse('member %r is not listed in the manifest' % name)
                    if info.isreg():
                        kind = 'file'
                    elif info.isdir():
                        kind = 'dir'
                    elif info.issym():
                        kind = 'symlink'
                        if _link_escapes(name, info.linkname, root) and not allow_external_symlinks:
                            refuse('symlink %r -> %r points outside %s' % (name, info.linkname, root))
                    elif info.islnk():
                        kind = 'hardlink'
                        if seen.get(info.linkname) != 'file' or _set_root(info.linkname, roots) != root:
                            refuse('hardlink %r -> %r points outside its set or to no earlier file' % (name, info.linkname))
                    else:
                        refuse('member %r is a device, FIFO or other special file' % name)
                    if meta['type'] != kind:
                        refuse('member %r is a %s but the manifest says %s' % (name, kind, meta['type']))
                    if kind in ('symlink', 'hardlink') and meta.get('target') != info.linkname:
                        refuse('member %r points to %r but the manifest says %r' % (name, info.linkname, meta.get('target')))
                    mtime = int(info.pax_headers['mtime'].split('.')[0]) if 'mtime' in info.pax_headers else int(info.mtime)
                    for field, value in (('mode', stat.S_IMODE(info.mode)), ('uid', info.uid), ('gid', info.gid), ('mtime', mtime)):
                        if field in meta and meta[field] != value:
                            refuse('member %r: %s is %r but the manifest says %r' % (name, field, value, meta[field]))
                    sink = writer.place(info, kind, root, refuse)
                    if kind == 'file':
                        if info.size != meta['size']:
                            refuse('member %r has %d bytes but the manifest says %d' % (name, info.size, meta['size']))
                        _hash_member(tar.extractfile(info), meta, name, refuse, sink)
                        writer.verified(root, name, sink)
                    seen[name] = kind
                    if kind == 'symlink':
                        links.add(name)
                missing = sorted(set(members) - set(seen))
                if missing:
                    refuse('%d member(s) of the manifest are missing from the archive (first: %r)' % (len(missing), missing[0]))
                writer.finish()
            except (tarfile.TarError, EOFError, OSError, UnicodeError) as exc:
                try:
                    stream.finish()
                except _runner.CommandError as cexc:
                    refuse('the archive is truncated or corrupt: %s' % cexc.msg)
                refuse('the archive is truncated or corrupt: %s' % exc)
            try:
                stream.finish()
            except _runner.CommandError as exc:
                refuse('the archive is truncated or corrupt: %s' % exc.msg)
    except _runner.CommandError as exc:
        refuse(exc.msg)
    return manifest


def _hash_member(fileobj, meta, name, refuse, sink=None):
    """Hash one member's data against the manifest; also write it through ``sink`` (a _Sink of the stage writer)
    when given. A sink that fails on corrupt data is reported only once the data matched its sha256."""
    digest = hashlib.sha256()
    while True:
        chunk = fileobj.read(_common.CHUNK)
        if not chunk:
            break
        digest.update(chunk)
        if sink is not None:
            sink.write(chunk)
    failure = sink.close() if sink is not None else None
    if digest.hexdigest() != meta['sha256']:
        refuse('member %r does not match its sha256 in the manifest' % name)
    if failure:
        refuse('member %r matches its sha256 but could not be written out decompressed: %s' % (name, failure))


def _mtime_ns(info):
    """A member's mtime in nanoseconds, exactly as the pax header has it (a float would round it)."""
    text = info.pax_headers.get('mtime')
    return int(decimal.Decimal(text) * 1000000000) if text else int(info.mtime) * 1000000000


def _in_stage(stage, name):
    """Where the member ``name`` (``<top>/<rest>``) is written below ``stage``: ``<stage>/<rest>``."""
    return os.path.join(stage, name.split('/', 1)[1]) if '/' in name else stage


class Target(object):
    """Where the verifying pass writes the members under one member root (see _StageWriter): ``stage``, ``as_tree``
    (a path's tree, else a database dump), ``decompress`` (an argv a dump that is one file is written through) and
    ``ready`` (called with that file's path once it is written and matched its sha256, while the pass goes on)."""

    def __init__(self, stage, as_tree, decompress=None, ready=None):
        self.stage = stage
        self.as_tree = as_tree
        self.decompress = decompress
        self.ready = ready


class _StageWriter(object):
    """Writes the members an archive's verifying pass selects below private stage directories.

    ``targets`` maps a member root to its Target.  A member ``<top>/<rest>`` under that root becomes
    ``<stage>/<rest>``.  A database dump (as_tree false) holds only files (0600) and directories (0700); with
    ``decompress`` (an argv such as ``zstd -dc``) a dump that is one file is written through that command, so a
    dump compressed as a whole comes out as the plain file a parallel restore seeks in.  A path's
    tree (as_tree true) comes out as GNU tar ``--extract --same-permissions --delay-directory-restore`` (plus
    ``--same-owner`` as root, by user and group name where they exist here, else by number) would write it:
    modes, owners, nanosecond mtimes, symlinks as links, hardlinks, empty directories; directories get their
    attributes in ``finish``, after their content.  Writing fails with an AppvaultError naming the file.

    Files are created, written and closed by a thread of their own, in order, while the caller goes on reading and
    hashing the next data (the copy into the page cache costs as much as the read and the hash). Its first error is
    raised in the caller at its next ``submit``, ``drain`` or ``finish``; ``stop`` ends the thread (always call it).
    """

    QUEUED = 16  # chunks (of up to _common.CHUNK bytes) waiting for the writing thread at most

    def __init__(self, targets):
        self.targets = targets
        self.as_root = os.geteuid() == 0
        self.dirs = []
        self.ids = {}
        self.now = time.time_ns()
        self.jobs = queue.Queue(self.QUEUED)
        self.error = None
        self.thread = None
        self.open = set()  # sinks with a file open (the writing thread adds and removes them)

    def _work(self):
        while True:
            job = self.jobs.get()
            try:
                if job is None:
                    return
                if self.error is None:
                    job()
            except BaseException as exc:  # handed to the reading thread, which raises it
                self.error = exc
            finally:
                self.jobs.task_done()

    def _raise(self):
        if self.error is not None:
            raise self.error  # and it stays: the thread skips every later job

    def submit(self, job):
        """Run ``job()`` in the writing thread after every job submitted before it."""
        self._raise()
        if self.thread is None:
            self.thread = threading.Thread(target=self._work, name='appvault-stage-writer', daemon=True)
            self.thread.start()
        self.jobs.put(job)

    def drain(self):
        """Wait until every submitted job has run; raise the first error."""
        if self.thread is not None:
            self.jobs.join()
        self._raise()

    def stop(self):
        """End the writing thread once it has run (or, after an error, skipped) what was submitted; close what a
        skipped or never submitted job left open."""
        if self.thread is not None:
            self.jobs.put(None)
            self.thread.join()
            self.thread = None
        for sink in list(self.open):
            sink._abort()

    def _fail(self, path, exc):
        raise AppvaultError('cannot write %s while restoring it: %s; nothing was changed' % (path, exc.strerror or exc))

    def place(self, info, kind, root, refuse):
        """Create the non-file member ``info`` below its stage; for a file member return the _Sink that writes
        it (opened by its first write), else None."""
        if root not in self.targets:
            return None
        target = self.targets[root]
        stage, as_tree = target.stage, target.as_tree
        name = info.name
        out = _in_stage(stage, name)
        if not as_tree and kind not in ('file', 'dir'):
            refuse('member %r: a database dump holds only files and directories, not a %s' % (name, kind))
        try:
            if kind == 'dir':
                os.makedirs(out, 0o700, exist_ok=True)
                if as_tree:
                    self.dirs.append((out, info))
            elif kind == 'symlink':
                os.symlink(info.linkname, out)
                self._attrs(out, info, follow=False)
            elif kind == 'hardlink':
                self.drain()  # its target is written by the writing thread
                os.link(_in_stage(stage, info.linkname), out)
        except OSError as exc:
            self._fail(out, exc)
        if kind != 'file':
            return None
        # only a dump that is one file was compressed as a whole (a directory dump's files are its tool's own)
        return _Sink(self, out, info if as_tree else None, target.decompress if name == root else None)

    def verified(self, root, name, sink):
        """The file member ``name`` matched its sha256: a dump that is one file is handed to its target's ``ready``
        once it is completely written."""
        target = self.targets.get(root)
        if target is not None and target.ready is not None and name == root and sink is not None:
            self.drain()
            target.ready(sink.out)

    def _owner(self, info):
        key = (info.uname, info.gname, info.uid, info.gid)
        if key not in self.ids:
            try:
                uid = pwd.getpwnam(info.uname).pw_uid if info.uname else info.uid
            except KeyError:
                uid = info.uid
            try:
                gid = grp.getgrnam(info.gname).gr_gid if info.gname else info.gid
            except KeyError:
                gid = info.gid
            self.ids[key] = (uid, gid)
        return self.ids[key]

    def _attrs(self, target, info, follow=True):
        """Owner (as root), mode (not of a symlink) and mtime of ``target``: a path, or the fd of a file."""
        if self.as_root:
            os.chown(target, *self._owner(info), follow_symlinks=follow)
        if follow:
            os.chmod(target, stat.S_IMODE(info.mode))
        os.utime(target, ns=(self.now, _mtime_ns(info)), follow_symlinks=follow)

    def finish(self):
        """The directories' attributes, deepest first, once nothing more is written into them."""
        self.drain()
        for out, info in reversed(self.dirs):
            try:
                self._attrs(out, info)
            except OSError as exc:
                self._fail(out, exc)
        self.dirs = []


class _Sink(object):
    """One file of a stage, written by the stage writer's thread: created with the first data, given the member's
    attributes (``attrs``, None for a dump: 0600) when closed; with ``decompress``, written through that command.

    A file's data is handed over a chunk behind, so a file of one chunk (most files) is one job of the thread."""

    def __init__(self, writer, out, attrs, decompress):
        self.writer = writer
        self.out = out
        self.attrs = attrs
        self.decompress = decompress
        self.fd = None
        self.feed = None
        self.fed = True
        self.failure = None
        self.pending = None

    def write(self, chunk):
        if self.pending is not None:
            self.writer.submit(functools.partial(self._write, self.pending))
        self.pending = chunk

    def close(self):
        """Finish the file; return why a decompressor failed (None when it did not). Write errors are raised."""
        self.writer.submit(functools.partial(self._close, self.pending))
        self.pending = None
        if self.decompress:
            self.writer.drain()
        return self.failure

    # -- in the writing thread --
    def _open(self):
        try:
            self.fd = os.open(self.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            self.writer._fail(self.out, exc)
        self.writer.open.add(self)
        if self.decompress:
            try:
                self.feed = _runner.Feed(self.decompress, stdout_fd=self.fd)
            except _runner.CommandError as exc:
                raise AppvaultError('cannot restore %s: %s; nothing was changed' % (self.out, exc.msg))

    def _write(self, chunk):
        if self.fd is None:
            self._open()
        if self.feed is not None:
            # A decompressor that stops reading failed: the rest is still read (and hashed) by the caller.
            self.fed = self.fed and self.feed.write(chunk)
            return
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as exc:
            self.writer._fail(self.out, exc)

    def _close(self, chunk):
        if chunk is not None:
            self._write(chunk)
        elif self.fd is None:
            self._open()
        if self.feed is not None:
            try:
                self.feed.finish()
            except _runner.CommandError as exc:
                self.failure = exc.msg
            self.feed = None
        fd, self.fd = self.fd, None
        self.writer.open.discard(self)
        try:
            if self.attrs is not None:
                self.writer._attrs(fd, self.attrs)
        except OSError as exc:
            self.writer._fail(self.out, exc)
        finally:
            os.close(fd)

    def _abort(self):
        """Stop the decompressor and close the file, once the writing thread has ended."""
        if self.feed is not None:
            self.feed.kill()
            self.feed = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.writer.open.discard(self)


# -- restore ----------------------------------------------------------------------
def owner_ids(user, group):
    uid = gid = -1
    if user is not None:
        try:
            uid = int(user) if str(user).isdigit() else pwd.getpwnam(user).pw_uid
        except KeyError:
            raise AppvaultError('owner %r does not exist on this host' % user)
    if group is not None:
        try:
            gid = int(group) if str(group).isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise AppvaultError('group %r does not exist on this host' % group)
    return uid, gid


def set_members(manifest, root):
    """{relative name: meta} of the members under ``root`` ('' is the root itself); hardlinks resolved to their file."""
    members = manifest['members']
    out = {}
    for name, meta in members.items():
        if name == root or name.startswith(root + '/'):
            rel = name[len(root) + 1:] if name != root else ''
            if meta['type'] == 'hardlink':
                meta = dict(members.get(meta['target'], {}), mode=meta.get('mode'), uid=meta.get('uid'), gid=meta.get('gid'))
            out[rel] = meta
    return out


# What current_tree keeps of an entry (a tuple's size: a tree of 50k files held as lstat results took 35 MiB more).
TreeEntry = collections.namedtuple('TreeEntry', 'kind mode uid gid size')


def current_tree(dest):
    """{relative name: TreeEntry} of what is at ``dest`` now, symlinks not followed ('' is ``dest`` itself)."""
    out = {}
    if not os.path.lexists(dest):
        return out
    stack = [(dest, '')]
    while stack:
        path, rel = stack.pop()
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            kind = 'dir'
            for name in os.listdir(path):
                stack.append((os.path.join(path, name), rel + '/' + name if rel else name))
        elif stat.S_ISREG(st.st_mode):
            kind = 'file'
        elif stat.S_ISLNK(st.st_mode):
            kind = 'symlink'
        else:
            kind = 'special'
        out[rel] = TreeEntry(kind, st.st_mode, st.st_uid, st.st_gid, st.st_size)
    return out


def tree_changes(dest, wanted, uid=-1, gid=-1, current=None):
    """What restoring ``wanted`` (from set_members) over ``dest`` would add, change and remove.  ``current``: the
    current_tree(dest) a caller has already read.

    The files whose metadata match are hashed by one thread per core: on a tree that is not in the page cache the
    reads wait on the disk, and two at a time take about 0.6-0.7 of the time of one (1 GiB of mixed files here)."""
    current = current_tree(dest) if current is None else current
    added = sorted(set(wanted) - set(current))
    removed = sorted(set(current) - set(wanted))
    changed = []
    to_hash = []
    for rel in sorted(set(wanted) & set(current)):
        meta = wanted[rel]
        kind, mode, st_uid, st_gid, size = current[rel]
        path = os.path.join(dest, rel) if rel else dest
        want_uid = uid if uid != -1 else meta.get('uid')
        want_gid = gid if gid != -1 else meta.get('gid')
        if kind != meta.get('type'):
            changed.append(rel)
        elif (stat.S_IMODE(mode) != meta.get('mode') and kind != 'symlink') or st_uid != want_uid or st_gid != want_gid:
            changed.append(rel)
        elif kind == 'symlink' and os.readlink(path) != meta.get('target'):
            changed.append(rel)
        elif kind == 'file' and size != meta.get('size'):
            changed.append(rel)
        elif kind == 'file':
            to_hash.append((rel, path))
    digests = _common.bounded_map(_common.sha256_file, (path for _rel, path in to_hash), _common.cpu_count())
    changed.extend(rel for (rel, _path), digest in zip(to_hash, digests) if digest != wanted[rel].get('sha256'))
    return dict(added=added, changed=sorted(changed), removed=removed)


def _chown_tree(path, uid, gid):
    if uid == -1 and gid == -1:
        return
    os.lchown(path, uid, gid)
    if os.path.isdir(path) and not os.path.islink(path):
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), uid, gid)


def _stamp():
    return datetime.datetime.now(datetime.timezone.utc).strftime(_catalog.TIMESTAMP_FORMAT)


def _stage_dir(dest):
    parent = os.path.dirname(dest)
    if not os.path.isdir(parent):
        os.makedirs(parent, 0o755)
    stage = os.path.join(parent, '.%s.appvault-stage' % os.path.basename(dest))
    _common.remove_path(stage)  # a leftover of an interrupted restore: ours to remove
    os.mkdir(stage, 0o700)
    return stage


def swap_in(new, dest, keep_previous=None):
    """Move ``dest`` aside to ``<dest>-bak-<UTC stamp>`` and ``new`` into its place; returns the backup copy's path."""
    bak = None
    if os.path.lexists(dest):
        bak = '%s-bak-%s' % (dest, _stamp())
        index = 0
        while os.path.lexists(bak):
            index += 1
            bak = '%s-bak-%s.%d' % (dest, _stamp(), index)
        os.rename(dest, bak)
    try:
        os.rename(new, dest)
    except OSError:
        if bak:
            os.rename(bak, dest)
        raise
    _common.fsync_dir(os.path.dirname(dest))
    removed = []
    if keep_previous is not None:
        parent = os.path.dirname(dest)
        pattern = re.compile('^' + re.escape(os.path.basename(dest)) + BAK_RE)
        # Oldest first by the UTC stamp in the name (a moved directory keeps its own mtime, so mtimes say nothing here).
        copies = sorted(n for n in os.listdir(parent) if pattern.match(n))
        copies = [os.path.join(parent, n) for n in copies]
        old = [c for c in copies if c != bak]
        excess = len(copies) - keep_previous
        for path in old[:max(0, excess)]:
            _common.remove_path(path)
            removed.append(path)
    return bak, removed


def swap_path(stage, root, dest, uid=-1, gid=-1, keep_previous=None):
    """Swap the tree of the member set ``root`` (files/<id>), written below ``stage`` by restore's verifying pass, into ``dest``."""
    new = _in_stage(stage, root)
    if not os.path.lexists(new):
        raise AppvaultError('the archive holds no %s' % root)
    _chown_tree(new, uid, gid)
    return swap_in(new, dest, keep_previous)


def whole_file_decompressor(entry):
    """The argv that undoes the compression of a manifest's database entry compressed as a whole (its dump is one
    file piped through zstd or gzip), else None."""
    compression = (entry.get('options') or {}).get('compression') or {}
    if entry.get('type') == 'file' and compression.get('how') == 'pipe':
        return _common.decompress_argv(compression.get('method'))
    return None


def dumps_stage(dumps_dest):
    """An empty private staging directory for database dumps in ``dumps_dest`` (both created 0700)."""
    if not os.path.isdir(dumps_dest):
        os.makedirs(dumps_dest, 0o700)
    stage = os.path.join(dumps_dest, '.appvault-stage')
    _common.remove_path(stage)
    os.mkdir(stage, 0o700)
    return stage


def publish_dumps(stage, entries, dumps_dest):
    """Move the dumps of ``entries`` from ``stage`` into ``dumps_dest``; returns {id: path}."""
    out = {}
    for entry in entries:
        base = entry['member'].split('/', 1)[1]
        final = os.path.join(dumps_dest, base)
        _common.remove_path(final)
        os.rename(os.path.join(stage, base), final)
        out[entry['id']] = final
    _common.fsync_dir(dumps_dest)
    return out


def short(names, limit=MAX_LISTED):
    return names[:limit] + (['... and %d more' % (len(names) - limit)] if len(names) > limit else [])


def _select(entries, wanted, what, archive):
    by_id = dict((e['id'], e) for e in entries)
    if wanted is None:
        return [e for e in entries if e.get('present', True)]
    unknown = [w for w in wanted if w not in by_id]
    if unknown:
        raise AppvaultError('%s %s: no such %s in the archive (it has: %s); nothing was changed'
                            % (archive, ', '.join(unknown), what, ', '.join(sorted(by_id)) or 'none'))
    absent = [w for w in wanted if not by_id[w].get('present', True)]
    if absent:
        raise AppvaultError('%s: path %s was absent when the backup was made; nothing was changed' % (archive, ', '.join(absent)))
    return [by_id[w] for w in wanted]


def _listing(dest, wanted, rels):
    lines = []
    for rel in rels:
        meta = wanted.get(rel)
        if meta is None:
            path = os.path.join(dest, rel) if rel else dest
            try:
                st = os.lstat(path)
                lines.append('%s (%o, %d bytes)' % (rel or '.', stat.S_IMODE(st.st_mode), st.st_size))
            except OSError:
                lines.append(rel or '.')
        else:
            lines.append('%s (%o, %s bytes)' % (rel or '.', meta.get('mode', 0), meta.get('size', 0)))
    return ''.join(line + '\n' for line in lines)


def restore(src, databases=None, paths=None, path_dest=None, dumps_dest=None, owner=None, group=None, keep_previous=None,
            identity=None, require_checksum_file=True, allow_external_symlinks=False, check_mode=False, want_diff=False,
            force=False, decompress=(), on_dump=None, before_swap=None, verified=None):
    """Verify ``src`` completely, then put the selected databases' dumps and paths in place; returns a result dict.
    ``verified``: a check of the whole file moments before, trusted while the file is unchanged (see verify()).

    The dumps of the database ids in ``decompress`` that were compressed as a whole come out decompressed (what
    a parallel restore reads best), by the same pass; each then says ``decompressed: true``.
    ``on_dump(id, path)`` is called, while the pass goes on, as soon as a dump that is one file is written (to a
    private stage) and matched its sha256 - a caller may start restoring it there; ``before_swap()`` once the
    whole archive is verified, before any dump is published and any path swapped in: if it raises, nothing is.

    One pass over the archive: once its manifest is read, the plan is made (what each destination gains and
    loses) and the selected members are written to private stages as they are verified (the dumps to a stage
    in ``dumps_dest``, each path to a stage beside its destination).  Only once the whole archive is verified
    are the dumps published and the paths swapped in; a refused archive leaves nothing behind.
    """
    src = os.path.abspath(src)
    if not os.path.isfile(src):
        raise AppvaultError('archive %s does not exist' % src)
    if keep_previous is not None and keep_previous < 1:
        raise AppvaultError('keep_previous must be 1 or more (the copy moved aside by this run is never removed)')
    uid, gid = owner_ids(owner, group)
    if dumps_dest is None:
        stem = _catalog.split_suffix(os.path.basename(src))[0]
        dumps_dest = os.path.join(os.path.dirname(src), stem + '.dumps')
    state = dict(plan=None, stages={}, made=[], times={})

    def make_room(path):
        # ``path`` (a stage's parent) and any missing ancestors are about to be made: remember which were
        # missing, and the times of the directory that gets the first new entry, to put back after a failure.
        missing = _missing_dirs(path)
        state['made'] += missing
        parent = os.path.dirname(missing[0]) if missing else path
        if parent not in state['times'] and os.path.isdir(parent):
            st = os.stat(parent)
            state['times'][parent] = (st.st_atime_ns, st.st_mtime_ns)

    def prepare(manifest):
        state['plan'] = plan = _restore_plan(src, manifest, databases, paths, path_dest, dumps_dest, uid, gid, want_diff, force)
        targets = {}
        if check_mode:
            return targets
        if plan['databases']:
            make_room(dumps_dest)
            stage = state['stages']['dumps'] = dumps_stage(dumps_dest)
            for entry in plan['databases']:
                unpack = whole_file_decompressor(entry) if entry['id'] in decompress else None
                ready = functools.partial(on_dump, entry['id']) if on_dump else None
                targets[entry['member']] = Target(stage, False, unpack, ready)
                plan['result']['databases'][entry['id']]['decompressed'] = bool(unpack)
        for entry, dest, differs in plan['paths']:
            if differs or force:
                make_room(os.path.dirname(dest))
                stage = state['stages'][entry['member']] = _stage_dir(dest)
                targets[entry['member']] = Target(stage, True)
        return targets

    done = False
    try:
        manifest = verify(src, identity, require_checksum_file, allow_external_symlinks, extract=prepare, verified=verified)
        plan = state['plan']
        result = plan['result']
        result['checksum'] = manifest.pop('_checksum')
        if manifest.pop('_trusted', False):
            result['trusted'] = True  # the whole file's sha256 is the one checked moments before (verified)
        if not check_mode:
            # The trees are written to disk (one syncfs per filesystem) beside whatever before_swap waits for, and
            # before they are swapped in: a crash after the swap must not leave empty files where the app's were.
            trees = [state['stages'][entry['member']] for entry, _dest, _differs in plan['paths']
                     if entry['member'] in state['stages']]
            synced = _common.in_background(write_out, trees) if trees else None
            try:
                if before_swap:
                    before_swap()
            except BaseException:
                if synced is not None:
                    concurrent.futures.wait([synced])  # the stages are removed below, after it
                raise
            if synced is not None:
                try:
                    synced.result()
                except OSError as exc:
                    raise AppvaultError('cannot write the restored files to disk: %s; nothing was changed (the paths '
                                        'were not swapped in)' % exc)
            if plan['databases']:
                extracted = publish_dumps(state['stages']['dumps'], plan['databases'], dumps_dest)
                for ident, path in extracted.items():
                    result['databases'][ident]['path'] = path
            for entry, dest, _differs in plan['paths']:
                if entry['member'] in state['stages']:
                    previous, removed = swap_path(state['stages'][entry['member']], entry['member'], dest, uid, gid, keep_previous)
                    result['paths'][entry['id']].update(previous=previous, removed_copies=removed)
        done = True
        return result
    finally:
        for stage in state['stages'].values():
            _common.remove_path(stage)
        if not done:  # a failed run leaves no directory it made behind, and the times of their parents as they were
            for path in reversed(state['made']):
                try:
                    os.rmdir(path)
                except OSError:
                    pass
            for path, times in state['times'].items():
                try:
                    os.utime(path, ns=times)
                except OSError:
                    pass


def write_out(trees):
    """Make the staged ``trees`` durable, then drop them from the page cache.

    A restore writes GBs of files that the application reads a few at a time, later: kept in memory they would push
    out what the database servers have cached; the database restores that run beside the swap (see
    _hostrun.restore_archive) can reuse the pages these files free.
    """
    _common.sync_filesystems(trees)
    _common.drop_cached(trees)


def _missing_dirs(path):
    """The ancestors of ``path`` (itself included) that do not exist yet, outermost first."""
    missing = []
    while path and not os.path.isdir(path):
        missing.insert(0, path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def _restore_plan(src, manifest, databases, paths, path_dest, dumps_dest, uid, gid, want_diff, force):
    """What restore() will do with the verified-so-far ``manifest``: the selection, each path's changes, the result."""
    path_dest = path_dest or {}
    db_sel = _select(manifest['databases'], databases, 'database', src)
    path_sel = _select(manifest['paths'], paths, 'path', src)
    unknown = sorted(set(path_dest) - set(p['id'] for p in manifest['paths']))
    if unknown:
        raise AppvaultError('path_dest names %s, not in the archive; nothing was changed' % ', '.join(unknown))
    summary = dict((k, v) for k, v in manifest.items() if k != 'members')
    result = dict(changed=False, manifest=summary, databases={}, paths={}, diff=[])
    plans = []
    for entry in path_sel:
        dest = os.path.normpath(path_dest.get(entry['id']) or entry['source'])
        if not os.path.isabs(dest):
            raise AppvaultError('destination of path %s must be absolute, got %s' % (entry['id'], dest))
        wanted = set_members(manifest, entry['member'])
        changes = tree_changes(dest, wanted, uid, gid)
        differs = bool(changes['added'] or changes['changed'] or changes['removed'])
        plans.append((entry, dest, differs))
        result['paths'][entry['id']] = dict(
            dest=dest, changed=differs or force, added=short(changes['added']), changed_entries=short(changes['changed']),
            removed=short(changes['removed']), counts=dict((k, len(v)) for k, v in changes.items()))
        if want_diff and differs:
            result['diff'].append(dict(
                before_header='%s (current)' % dest, after_header='%s (%s)' % (dest, os.path.basename(src)),
                before=_listing(dest, {}, changes['removed'] + changes['changed']),
                after=_listing(dest, wanted, changes['added'] + changes['changed'])))
    for entry in db_sel:
        base = entry['member'].split('/', 1)[1]
        info = dict((k, v) for k, v in entry.items() if k not in ('member',))
        info['path'] = os.path.join(dumps_dest, base)
        result['databases'][entry['id']] = info
    result['dumps_dest'] = dumps_dest
    result['changed'] = bool(db_sel) or any(differs or force for _e, _d, differs in plans)
    return dict(result=result, databases=db_sel, paths=plans)
