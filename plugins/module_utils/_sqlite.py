# -*- coding: utf-8 -*-
# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQLite adapter: online backup, integrity check, inventory and atomic replacement of a database file.

The copy is made with SQLite's online backup API (Python's sqlite3 module, part of the standard library), so it
is consistent while the application keeps writing. Compression runs as a separate process through the runner.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import time

from ansible_collections.appvault.backup.plugins.module_utils import _common, _inventory, _runner
from ansible_collections.appvault.backup.plugins.module_utils._common import GZIP_MAGIC, ZSTD_MAGIC, AppvaultError, decompress_argv

SQLITE_MAGIC = b'SQLite format 3\x00'
BUSY_TIMEOUT = 30.0


def is_sqlite_file(path):
    with open(path, 'rb') as fileobj:
        return fileobj.read(16) == SQLITE_MAGIC


def check_source(path):
    if not os.path.isfile(path):
        raise AppvaultError('SQLite database %s does not exist' % path)
    if not is_sqlite_file(path):
        raise AppvaultError('%s is not an SQLite 3 database (no SQLite header)' % path)


def _uri(path, mode):
    return 'file:%s?mode=%s' % (os.path.abspath(path).replace('?', '%3f').replace('#', '%23'), mode)


def connect(path, mode='ro'):
    """Open an existing database file (never creates one)."""
    try:
        return sqlite3.connect(_uri(path, mode), uri=True, timeout=BUSY_TIMEOUT)
    except sqlite3.Error as exc:
        raise AppvaultError('cannot open SQLite database %s: %s' % (path, exc))


def online_backup(path, target):
    """Copy ``path`` into the new file ``target`` with the online backup API, in one step (one consistent snapshot)."""
    source = connect(path, 'ro')
    try:
        dest = sqlite3.connect(target)
        try:
            source.backup(dest, pages=-1)
        finally:
            dest.close()
    except sqlite3.Error as exc:
        raise AppvaultError('online backup of %s failed: %s' % (path, exc))
    finally:
        source.close()
    os.chmod(target, 0o600)


def integrity_check(path, quick=False):
    """Raise unless PRAGMA integrity_check (or quick_check) says ok."""
    try:
        conn = connect(path, 'ro')
        try:
            rows = conn.execute('PRAGMA %s' % ('quick_check' if quick else 'integrity_check')).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise AppvaultError('%s is not a usable SQLite database: %s' % (path, exc))
    problems = [r[0] for r in rows]
    if problems != ['ok']:
        raise AppvaultError('%s failed the SQLite integrity check: %s' % (path, '; '.join(problems[:5])), problems=problems[:50])


def _quote(name):
    return '"' + name.replace('"', '""') + '"'


def _row_digest(row):
    text = repr(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row))
    return int(hashlib.md5(text.encode('utf-8', 'surrogatepass')).hexdigest()[:15], 16)  # noqa: S324 - not for security


def inventory(path, checksums=False):
    """Objects from sqlite_master (tables, indexes, views, triggers with their SQL) and exact row counts."""
    try:
        conn = connect(path, 'ro')
        try:
            conn.text_factory = lambda b: b.decode('utf-8', 'surrogateescape')
            inv = {'tables': {}, 'indexes': {}, 'views': {}, 'triggers': {}, 'rows': {}}
            kinds = {'table': 'tables', 'index': 'indexes', 'view': 'views', 'trigger': 'triggers'}
            rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
                                "ORDER BY type, name").fetchall()
            for kind, name, table, sql in rows:
                if kind in kinds:
                    inv[kinds[kind]][name] = {'table': table, 'sql': sql} if kind in ('index', 'trigger') else {'sql': sql}
            if checksums:
                inv['checksums'] = {}
            for name in sorted(inv['tables']):
                inv['rows'][name] = conn.execute('SELECT COUNT(*) FROM %s' % _quote(name)).fetchone()[0]  # noqa: S608
                if checksums:
                    count, total = 0, 0
                    for row in conn.execute('SELECT * FROM %s' % _quote(name)):  # noqa: S608
                        count += 1
                        total += _row_digest(row)
                    inv['checksums'][name] = '%d:%d' % (count, total)
            inv['_sqlite_version'] = sqlite3.sqlite_version
            inv['_user_version'] = conn.execute('PRAGMA user_version').fetchone()[0]
            return inv
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise AppvaultError('cannot read the inventory of %s: %s' % (path, exc))


def detect_compression(src):
    with open(src, 'rb') as fileobj:
        head = fileobj.read(16)
    if not head:
        raise AppvaultError('%s is empty, not an SQLite backup' % src)
    if head.startswith(ZSTD_MAGIC):
        return 'zstd'
    if head.startswith(GZIP_MAGIC):
        return 'gzip'
    if head == SQLITE_MAGIC:
        return 'none'
    raise AppvaultError('%s is neither an SQLite database nor a zstd or gzip compressed one' % src)


def unpack(src, outer, temp):
    """Write the plain database of ``src`` to ``temp`` (mode 0600)."""
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    try:
        if outer == 'none':
            shutil.copyfile(src, temp)
        else:
            _runner.pipeline([decompress_argv(outer)], stdin_path=src, stdout_path=temp)
    except _runner.CommandError as exc:
        raise AppvaultError('%s is corrupt or truncated: %s' % (src, exc.msg))
    except OSError as exc:
        raise AppvaultError('cannot write %s: %s' % (temp, exc))
    if not is_sqlite_file(temp):
        raise AppvaultError('%s does not hold an SQLite database' % src)


def checkpoint(path):
    """Fold a WAL into the database file, so the file alone is the whole database; fail when it is still in use."""
    wal = path + '-wal'
    if not os.path.exists(wal):
        return
    try:
        conn = connect(path, 'rw')
        try:
            busy, _log, _done = conn.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise AppvaultError('cannot checkpoint the WAL of %s: %s' % (path, exc))
    if busy or (os.path.exists(wal) and os.path.getsize(wal)):
        raise AppvaultError('%s is in use (its WAL could not be checkpointed); stop the application first' % path)


def remove_sidecars(path):
    """Remove the -wal / -shm files that read-only connections leave beside a (temporary) copy in WAL mode."""
    for suffix in ('-wal', '-shm', '-journal'):
        _common.remove_path(path + suffix)


def replace(temp, path, keep_backup):
    """Move ``temp`` over ``path`` in one rename, keeping owner and mode of the old file and a hard-linked .bak."""
    backup = None
    remove_sidecars(temp)
    if os.path.exists(path):
        st = os.stat(path)
        os.chmod(temp, st.st_mode & 0o7777)
        if os.geteuid() == 0:
            os.chown(temp, st.st_uid, st.st_gid)
        if keep_backup:
            backup = path + '.bak'
            link = backup + '.appvault-tmp'
            _common.remove_path(link)
            os.link(path, link)
            os.rename(link, backup)
    else:
        os.chmod(temp, 0o600)
    _common.fsync_path(temp)
    os.rename(temp, path)
    for suffix in ('-wal', '-shm'):
        stale = path + suffix
        if os.path.exists(stale) and (suffix == '-shm' or os.path.getsize(stale) == 0):
            os.unlink(stale)
    _common.fsync_dir(os.path.dirname(os.path.abspath(path)))
    return backup


def dump_argument_spec():
    """The options of the sqlite_dump module."""
    return dict(
        path=dict(type='path', required=True),
        dest=dict(type='path', required=True),
        force=dict(type='bool', default=False),
        compression=dict(type='str', default='zstd', choices=['zstd', 'gzip', 'none']),
        compression_level=dict(type='int'),
        inventory=dict(type='bool', default=True),
        checksums=dict(type='bool', default=False),
    )


def run_dump(params, check_mode=False, warn=None):
    """What the sqlite_dump module does, for the module and the host-side runner alike: ``params`` as the
    module's argument spec gives them (defaults filled in), ``warn`` called with each warning."""
    warn = warn or (lambda msg: None)
    path, dest = params['path'], params['dest']
    check_source(path)
    _common.check_destination(dest, params['force'])
    compress = _common.compress_argv(params['compression'], params['compression_level'], _common.cpu_count())
    level = params['compression_level']
    if level is None and compress:
        level = 3 if params['compression'] == 'zstd' else 1
    result = dict(changed=True, server_version=sqlite3.sqlite_version, tool_version=sqlite3.sqlite_version, flavour='sqlite',
                  compression=dict(method=params['compression'], level=level, how='pipe' if compress else 'none'),
                  commands=['sqlite3 online backup %s' % path] + ([_runner.mask_argv(compress)] if compress else []))
    if check_mode:
        return result
    partial = _common.partial_name(dest)
    copy = partial + '.db'
    started = time.monotonic()
    try:
        _common.remove_path(copy)
        online_backup(path, copy)
        integrity_check(copy, quick=True)
        if params['inventory']:
            result['inventory'] = inventory(copy, checksums=params['checksums'])
        remove_sidecars(copy)
        if compress:
            try:
                _runner.pipeline([compress], stdin_path=copy, stdout_path=partial)
            except _runner.CommandError as exc:
                raise AppvaultError('compressing the copy of %s failed: %s' % (path, exc.msg))
            os.unlink(copy)
        else:
            os.rename(copy, partial)
        facts = _common.seal(partial)
        if facts['size'] == 0:
            raise AppvaultError('the backup of %s is empty; nothing was written to %s' % (path, dest))
        _common.publish(partial, dest, sealed=True)
    except OSError as exc:
        raise AppvaultError('backup of %s to %s failed: %s' % (path, dest, exc))
    finally:
        _common.remove_path(copy)
        remove_sidecars(copy)
        _common.remove_path(partial)
    facts['path'] = dest
    result['artefact'] = facts
    result['duration'] = round(time.monotonic() - started, 3)
    return result


def restore_argument_spec():
    """The options of the sqlite_restore module."""
    return dict(
        path=dict(type='path', required=True),
        src=dict(type='path', required=True),
        backup=dict(type='bool', default=True),
        expected_inventory=dict(type='dict'),
        checksums=dict(type='bool', default=False),
    )


def run_restore(params, check_mode=False, source_facts=True):
    """What the sqlite_restore module does, for the module and _hostrun.restore_archive alike. ``source_facts``
    false leaves the dump's size and sha256 out of ``source`` (the caller verified the dump already)."""
    path, src = params['path'], params['src']
    if not os.path.isfile(src):
        raise AppvaultError('src %s does not exist or is not a file' % src)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise AppvaultError('directory %s of path does not exist' % parent)
    if os.path.lexists(path) and not os.path.isfile(path):
        raise AppvaultError('path %s exists and is not a file' % path)
    outer = detect_compression(src)
    decompress = _common.decompress_argv(outer)
    exists = os.path.exists(path)
    result = dict(changed=True, database_created=not exists, server_version=sqlite3.sqlite_version,
                  tool_version=sqlite3.sqlite_version, flavour='sqlite',
                  commands=[_runner.mask_argv(decompress)] if decompress else [],
                  source=dict(path=src, compression=outer))
    temp = os.path.join(parent, '.%s.appvault-new' % os.path.basename(path))
    started = time.monotonic()
    try:
        _common.remove_path(temp)
        unpack(src, outer, temp)
        integrity_check(temp)
        result['inventory'] = inventory(temp, checksums=params['checksums'])
        _inventory.verify(result, params['expected_inventory'], 'the backup %s (%s was not replaced)' % (params['src'], params['path']))
        if check_mode:
            return result
        if exists:
            checkpoint(path)
        try:
            result['backup_file'] = replace(temp, path, params['backup'])
        except OSError as exc:
            raise AppvaultError('cannot replace %s: %s' % (path, exc))
    finally:
        _common.remove_path(temp)
        remove_sidecars(temp)
    result['duration'] = round(time.monotonic() - started, 3)
    if source_facts:
        result['source'].update(_common.artefact_facts(src))
    return result
