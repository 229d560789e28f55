# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks before a backup or restore changes anything: tools, databases, paths, free space, the compatibility gate.

Everything is collected first and reported together, so one run names every problem.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import os
import shutil
import sqlite3

from ansible_collections.appvault.backup.plugins.module_utils import _catalog, _common, _manifest, _mysql, _postgres, _sqlite
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError

CONNECTION_OPTIONS = {
    'postgresql': ('ssl_mode', 'maintenance_db', 'bin_dir', 'connect_timeout'),
    'mysql': ('config_file', 'bin_dir', 'connect_timeout'),
}
COMPRESSORS = {'zstd': 'zstd', 'gzip': 'gzip', 'none': None}
# Share of free space kept on top of the estimate.
MARGIN = 0.10


def connection_params(db):
    """The connection options of one resolved database, as the engine's modules take them."""
    module = db['module']
    spec = _postgres.connection_argument_spec_defaults() if module == 'postgresql' else _mysql.connection_argument_spec_defaults()
    params = dict(spec)
    for key in ('name', 'login_host', 'login_port', 'login_user', 'login_password', 'login_unix_socket'):
        if db.get(key) is not None:
            params[key] = db[key]
    for key in CONNECTION_OPTIONS[module]:
        if db.get('options', {}).get(key) is not None:
            params[key] = db['options'][key]
    return params


def _postgres_probe(db, secrets, mode):
    conn = _postgres.Connection(connection_params(db), secrets)
    info = dict(server_version=conn.connect(conn.params['maintenance_db']))
    info['major'] = conn.server_major
    tools = ('pg_dump',) if mode == 'backup' else ('pg_restore', 'psql')
    info['tools'] = dict((tool, _postgres.find_client(tool, conn.server_major, conn.params.get('bin_dir'))['path']) for tool in tools)
    info['exists'] = conn.database_exists(db['name'])
    if info['exists']:
        info['size'] = int(conn.query('SELECT pg_database_size(current_database())', db['name']).strip() or 0)
    return info


def _mysql_probe(db, secrets, mode):
    conn = _mysql.Connection(connection_params(db), secrets)
    info = dict(server_version=conn.connect(), flavour=conn.flavour)
    info['major'] = '%d.%d' % tuple(conn.version_tuple[:2])
    info['tools'] = {'client': conn.client()['path']}
    if mode == 'backup':
        info['tools']['dump'] = _mysql.dump_tool(conn)['path']
    info['exists'] = conn.database_exists(db['name'])
    if info['exists']:
        sql = 'SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s'
        out = conn.query(sql % _mysql.sql_literal(db['name'])).strip()
        info['size'] = int(float(out or 0))
    return info


def _sqlite_probe(db, _secrets, mode):
    path = db['path']
    info = dict(server_version=sqlite3.sqlite_version, major=None, tools={}, exists=os.path.isfile(path))
    if info['exists']:
        info['size'] = os.path.getsize(path)
        if not _sqlite.is_sqlite_file(path):
            raise AppvaultError('%s is not an SQLite database' % path)
    elif mode == 'backup':
        raise AppvaultError('the SQLite database %s does not exist' % path)
    return info


PROBES = {'postgresql': _postgres_probe, 'mysql': _mysql_probe, 'sqlite': _sqlite_probe}


def probe_databases(databases, mode):
    """Connect to every database; return (facts per id, problems)."""
    facts = []
    problems = []
    with _common.SecretDir() as secrets:
        for db in databases:
            entry = dict(id=db['id'], engine=db['engine'], name=db.get('name') or db.get('path'))
            try:
                entry.update(PROBES[db['module']](db, secrets, mode))
            except AppvaultError as exc:
                entry['problem'] = exc.msg
                problems.append('database %s: %s' % (db['id'], exc.msg))
            facts.append(entry)
    return facts, problems


def tree_stats(path):
    """Files, bytes and the newest modification time under ``path`` (a file or a directory); symlinks not followed."""
    files = 0
    size = 0
    newest = 0.0
    if os.path.isfile(path) or os.path.islink(path):
        st = os.lstat(path)
        return dict(files=1, bytes=st.st_size, newest_mtime=st.st_mtime)
    for top, dirs, names in os.walk(path):
        for name in names + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            try:
                st = os.lstat(os.path.join(top, name))
            except FileNotFoundError:
                continue
            files += 1
            size += st.st_size
            newest = max(newest, st.st_mtime)
    return dict(files=files, bytes=size, newest_mtime=newest or None)


def probe_paths(paths, mode):
    facts = []
    problems = []
    for item in paths:
        entry = dict(id=item['id'], path=item['path'], exists=os.path.lexists(item['path']), optional=item['optional'])
        if entry['exists']:
            try:
                entry.update(tree_stats(item['path']))
            except OSError as exc:
                entry['problem'] = '%s: %s' % (item['path'], exc.strerror)
                problems.append('path %s: cannot read %s: %s' % (item['id'], item['path'], exc.strerror))
        elif mode == 'backup' and not item['optional']:
            entry['problem'] = 'missing'
            problems.append('path %s: %s does not exist (mark it optional: true if it may be missing)' % (item['id'], item['path']))
        facts.append(entry)
    return facts, problems


def check_tools(compression, recipients, mode):
    problems = []
    needed = ['tar']
    if COMPRESSORS.get(compression):
        needed.append(COMPRESSORS[compression])
    if recipients and mode == 'backup':
        needed.append('age')
    for tool in needed:
        if not shutil.which(tool):
            problems.append('%s is not installed (install the package %s, or set appvault_install_tools: true)' % (tool, tool))
    return problems


def space(backup_dir, databases, paths, factor):
    """(free bytes, needed bytes) for the backup directory; ``factor`` scales the raw size to what will be written."""
    probe = backup_dir
    while not os.path.isdir(probe):
        probe = os.path.dirname(probe)
    raw = sum(d.get('size') or 0 for d in databases) + sum(p.get('bytes') or 0 for p in paths)
    return _common.free_bytes(probe), int(raw * factor * (1 + MARGIN))


def _os(host):
    release = (host or {}).get('os') or {}
    return '%s %s' % (release.get('id') or '?', release.get('version_id') or '?')


def gate(manifest, app, databases, current_version):
    """Compare a backup's manifest with the target: (blocked, warnings, report rows)."""
    blocked = []
    warnings = []
    report = []
    source_os, target_os = _os(manifest.get('host')), _os(_manifest.host_info())
    report.append(dict(item='os', backup=source_os, target=target_os))
    if source_os != target_os:
        warnings.append('the backup comes from %s, this host runs %s: test the restore before relying on it' % (source_os, target_os))
    backup_app = manifest.get('app') or {}
    report.append(dict(item='app', backup='%s (%s)' % (backup_app.get('name'), backup_app.get('profile')),
                       target='%s (%s)' % (app['name'], app['profile'])))
    if backup_app.get('profile') and backup_app.get('profile') != app['profile']:
        warnings.append('the backup was made with profile %s, this app uses %s' % (backup_app.get('profile'), app['profile']))
    report.append(dict(item='app version', backup=backup_app.get('version'), target=current_version))
    by_id = dict((db['id'], db) for db in databases)
    targets = dict((db['id'], db) for db in app['databases'])
    for entry in manifest.get('databases') or []:
        ident = entry.get('id')
        target = targets.get(ident)
        fact = by_id.get(ident) or {}
        engine = entry.get('engine')
        report.append(dict(item='database %s' % ident, backup='%s %s' % (engine, entry.get('server_version')),
                           target='%s %s' % (fact.get('flavour') or (target or {}).get('engine'), fact.get('server_version'))
                           if target else 'not defined'))
        if target is None:
            blocked.append('database %s is in the backup but not in appvault_app.databases; add it (or restore without it)' % ident)
            continue
        source_family = _family(engine)
        if source_family != target['module']:
            blocked.append('database %s: the backup holds a %s dump, the target is %s; another engine cannot restore it'
                           % (ident, engine, target['engine']))
            continue
        if fact.get('problem'):
            continue
        if source_family == 'postgresql':
            source_major = _pg_major(entry.get('server_version'))
            if source_major and fact.get('major') and source_major > fact['major']:
                blocked.append('database %s: the dump comes from PostgreSQL %s, the target server is %s; a newer dump does '
                               'not restore into an older server - upgrade the target first' % (ident, source_major, fact['major']))
        elif source_family == 'mysql':
            source = _mysql_version(entry.get('server_version'))
            flavour = (entry.get('flavour') or ('mariadb' if 'mariadb' in (entry.get('server_version') or '').lower() or engine == 'mariadb'
                                                else None))
            if flavour and fact.get('flavour') and flavour != fact['flavour']:
                warnings.append('database %s: the dump comes from %s, the target server is %s; check views and routines '
                                'after the restore' % (ident, flavour, fact['flavour']))
            target_version = _mysql_version(fact.get('server_version'))
            if source and target_version and source[:2] > target_version[:2]:
                warnings.append('database %s: the dump comes from server %s, the target is older (%s); features of the newer '
                                'server may fail to restore' % (ident, entry.get('server_version'), fact.get('server_version')))
    for item in manifest.get('paths') or []:
        if item.get('id') not in set(p['id'] for p in app['paths']):
            blocked.append('path %s is in the backup but not in appvault_app.paths; add it so it has a destination' % item.get('id'))
    return blocked, warnings, report


def _family(engine):
    return {'postgresql': 'postgresql', 'mysql': 'mysql', 'mariadb': 'mysql', 'sqlite': 'sqlite'}.get(engine, engine)


def _pg_major(version):
    try:
        return int(str(version).split('.', 1)[0])
    except (TypeError, ValueError):
        return None


def _mysql_version(version):
    try:
        return _mysql.parse_version(str(version))[1]
    except (AppvaultError, TypeError, ValueError, IndexError):
        return None


def read_archive(path, verified=None):
    """(catalogue entry, manifest, problem) of the archive to restore, its whole sha256 checked against its checksum
    file (what backup_info with verify=true reports), or ``verified`` trusted (_catalog.describe); problem is None
    when it can be restored."""
    try:
        entry, manifest = _catalog.describe(os.path.abspath(path), verify=True, verified=verified)
    except OSError as exc:
        return None, None, 'archive %s: %s' % (path, exc.strerror or exc)
    if not entry['valid']:
        return entry, None, '%s cannot be restored: %s' % (entry['path'], entry['reason'])
    return entry, manifest, None


def run(app, backup_dir, mode, compression='zstd', recipients=None, manifest=None, current_version=None, force=False,
        archive=None, verified=None):
    """The preflight: facts about databases and paths, free space, the gate; raises naming every problem.

    ``archive``: the archive to restore, read and verified (read_archive, trusting ``verified``) while the databases
    and paths are probed; its manifest gates the restore, and the result holds its ``backup`` entry and ``manifest``.
    """
    reading = None
    if archive and mode != 'restore':
        raise AppvaultError('archive is read for a restore: give mode=restore, not %s' % mode)
    if archive:
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        reading = pool.submit(read_archive, archive, verified)
        pool.shutdown(wait=False)
    databases, problems = probe_databases(app['databases'], mode)
    paths, path_problems = probe_paths(app['paths'], mode)
    problems += path_problems
    problems += check_tools(compression, recipients, mode)
    # A backup writes the dumps, then the archive (at most about their size); a restore writes a safety snapshot
    # plus the extracted dumps and paths next to the current ones.
    free, needed = space(backup_dir, databases, paths, 2.0 if mode == 'backup' else 3.0)
    if free < needed:
        problems.append('%s has %s free, this %s needs about %s (databases and paths add up to %s)'
                        % (backup_dir, _common.human_size(free), mode, _common.human_size(needed), _common.human_size(int(needed / (1 + MARGIN)))))
    result = dict(databases=databases, paths=paths, free_bytes=free, needed_bytes=needed, host=_manifest.host_info(),
                  blocked=[], risks=[], report=[])
    if reading is not None:
        entry, manifest, problem = reading.result()
        result.update(backup=entry, manifest=manifest)
        if problem:
            problems.insert(0, problem)
    if manifest is not None:
        blocked, warnings, report = gate(manifest, app, databases, current_version)
        result.update(blocked=blocked, risks=warnings, report=report)
        if blocked and not force:
            problems += ['blocked: %s' % text for text in blocked]
    result['preview'] = preview(result)
    if problems:
        raise AppvaultError('preflight found %d problem%s, nothing was changed: %s'
                            % (len(problems), '' if len(problems) == 1 else 's', '; '.join(problems)), preflight=result)
    return result


def _when(epoch):
    if not epoch:
        return 'never'
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')


def preview(result):
    """Readable lines: backup and target side by side, then what is there now and would be replaced."""
    lines = ['%-16s backup: %-28s target: %s' % (row['item'], row['backup'], row['target']) for row in result['report']]
    for db in result['databases']:
        if db.get('problem'):
            lines.append('database %s: %s' % (db['id'], db['problem']))
        elif db.get('exists'):
            lines.append('database %s (%s %s): %s now, replaced' % (db['id'], db['engine'], db.get('server_version'), _common.human_size(db.get('size') or 0)))
        else:
            lines.append('database %s (%s %s): does not exist yet, created' % (db['id'], db['engine'], db.get('server_version')))
    for item in result['paths']:
        if item.get('exists'):
            lines.append('path %s %s: %d files, %s, newest change %s - moved aside, then replaced'
                         % (item['id'], item['path'], item.get('files') or 0, _common.human_size(item.get('bytes') or 0), _when(item.get('newest_mtime'))))
        else:
            lines.append('path %s %s: does not exist yet' % (item['id'], item['path']))
    return lines
