# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host-side runner of scheduled backups (installed by the appvault.backup.schedule role) and the steps of backup_create.

It runs on the managed host with plain python3 and no Ansible: the role copies ``plugins/module_utils`` there as
a package tree, so the runner calls the very functions the modules call (one core). ``run`` does what the backup
role does - run lock, optional maintenance, every database's dump, the archive, retention - and notifies;
``check`` is for monitoring. The configuration is a 0600 JSON file the role renders from ``appvault_app``.

Logging: under systemd (``JOURNAL_STREAM`` set) lines go to stderr with ``<N>`` priority prefixes, which the
journal stores with the unit's SyslogIdentifier; otherwise to syslog through ``/dev/log`` when that socket exists
(warnings and errors also to stderr, which cron mails); otherwise everything to stderr.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import pwd
import random
import secrets
import socket
import stat
import sys
import syslog
import time
import urllib.error
import urllib.request

from ansible_collections.appvault.backup.plugins.module_utils import (
    _appdef, _archive, _catalog, _common, _destinations, _manifest, _mysql, _postgres, _preflight, _runner, _schedule, _sqlite,
    _transfer)
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError

CONFIG_VERSION = 1
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED = 0, 1, 64, 75
CHECK_OK, CHECK_CRITICAL, CHECK_UNKNOWN = 0, 2, 3
ENGINES = {'postgresql': _postgres, 'mysql': _mysql, 'sqlite': _sqlite}
DUMP_SUFFIX = {'postgresql': '.pgdump', 'mysql': '.sql', 'sqlite': '.sqlite'}
# Dump options a database's ``options`` may set, per module family (docs/environment.md).
DUMP_OPTIONS = {
    'postgresql': ('format', 'jobs', 'compression', 'exclude_schemas', 'exclude_tables', 'exclude_table_data'),
    'mysql': ('compression', 'replace', 'exclude_tables', 'exclude_table_data'),
    'sqlite': ('compression',),
}
DEFAULTS = dict(version=CONFIG_VERSION, backup_dir='/var/backups/appvault', keep=7, label='', compression='zstd', recipients=[],
                checksums=True, quiesce=False, lock_lease=0, hook_timeout=30, on_success={}, on_failure={},
                check={}, destinations=[], rclone_path=None)
HOOK_KEYS = ('webhook', 'command')


class Locked(AppvaultError):
    """The run lock is held by a live operation."""


class Log(object):
    """Lines to the journal, syslog or stderr (see the module's docstring)."""

    def __init__(self, ident, stream=None, devlog='/dev/log'):
        self.ident = ident
        self.stream = stream or sys.stderr
        self.journal = bool(os.environ.get('JOURNAL_STREAM'))
        self.syslog = not self.journal and _is_socket(devlog)
        if self.syslog:
            syslog.openlog(ident, syslog.LOG_PID, syslog.LOG_DAEMON)

    def emit(self, priority, text):
        for line in str(text).splitlines() or ['']:
            if self.journal:
                self.stream.write('<%d>%s\n' % (priority, line))
                continue
            if self.syslog:
                syslog.syslog(priority, line)
            if not self.syslog or priority <= syslog.LOG_WARNING:
                self.stream.write('%s[%d]: %s\n' % (self.ident, os.getpid(), line))
        self.stream.flush()

    def info(self, text):
        self.emit(syslog.LOG_INFO, text)

    def warning(self, text):
        self.emit(syslog.LOG_WARNING, 'warning: %s' % text)

    def error(self, text):
        self.emit(syslog.LOG_ERR, 'error: %s' % text)


class Collect(object):
    """The log of a module that runs these steps: lines kept for its result, warnings also given to ``warn``."""

    def __init__(self, warn=None):
        self.lines = []
        self.warn = warn or (lambda text: None)

    def info(self, text):
        self.lines.append(text)

    def warning(self, text):
        self.lines.append('warning: %s' % text)
        self.warn(text)

    def error(self, text):
        self.lines.append('error: %s' % text)


def _is_socket(path):
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


# -- configuration -----------------------------------------------------------------
def load_config(path):
    """The runner's configuration: a JSON object readable by its owner only (it holds database passwords)."""
    try:
        st = os.stat(path)
        with open(path) as fileobj:
            data = json.load(fileobj)
    except OSError as exc:
        raise AppvaultError('cannot read the configuration %s: %s' % (path, exc.strerror or exc))
    except ValueError as exc:
        raise AppvaultError('the configuration %s is not valid JSON: %s' % (path, exc))
    if st.st_mode & 0o077:
        raise AppvaultError('the configuration %s holds secrets and must not be readable by group or others (mode %04o); '
                            'chmod 0600 it' % (path, stat.S_IMODE(st.st_mode)))
    if st.st_uid not in (0, os.geteuid()):
        raise AppvaultError('the configuration %s must belong to root or to the user running the job' % path)
    return check_config(data, path)


def check_config(data, where='configuration'):
    """``data`` with defaults filled in and every key checked; ``app`` resolved as the app_definition filter does."""
    if not isinstance(data, dict):
        raise AppvaultError('%s must hold a JSON object' % where)
    unknown = sorted(set(data) - set(DEFAULTS) - {'app'})
    if unknown:
        raise AppvaultError('%s: unknown key %s (known: app, %s)' % (where, ', '.join(unknown), ', '.join(sorted(DEFAULTS))))
    config = dict(DEFAULTS)
    config.update(data)
    if config['version'] != CONFIG_VERSION:
        raise AppvaultError('%s has version %r; this runner reads version %d (run the schedule role again)'
                            % (where, config['version'], CONFIG_VERSION))
    if 'app' not in data:
        raise AppvaultError('%s: app (the environment definition) is missing' % where)
    config['app'] = _appdef.resolve(data['app'])
    if not isinstance(config['backup_dir'], str) or not os.path.isabs(config['backup_dir']):
        raise AppvaultError('%s: backup_dir must be an absolute path' % where)
    for key in ('keep', 'lock_lease', 'hook_timeout'):
        if isinstance(config[key], bool) or not isinstance(config[key], int) or config[key] < 0:
            raise AppvaultError('%s: %s must be a whole number, 0 or more' % (where, key))
    if config['compression'] not in ('zstd', 'gzip'):
        raise AppvaultError('%s: compression must be zstd or gzip' % where)
    for key in ('on_success', 'on_failure'):
        hook = config[key] or {}
        if not isinstance(hook, dict) or set(hook) - set(HOOK_KEYS):
            raise AppvaultError('%s: %s may only hold %s' % (where, key, ' and '.join(HOOK_KEYS)))
        url = hook.get('webhook')
        if url and not str(url).startswith(('http://', 'https://')):
            raise AppvaultError('%s: %s.webhook must be an http:// or https:// URL' % (where, key))
        config[key] = dict(webhook=url or None, command=_appdef.command_list(hook.get('command'), '%s.command' % key))
    if config['rclone_path'] is not None and not (isinstance(config['rclone_path'], str) and os.path.isabs(config['rclone_path'])):
        raise AppvaultError('%s: rclone_path must be an absolute path' % where)
    if not isinstance(config['destinations'], list):
        raise AppvaultError('%s: destinations must be a list' % where)
    checked = []
    for dest in config['destinations']:
        if not isinstance(dest, dict):
            raise AppvaultError('%s: each destination must be a mapping, got %r' % (where, dest))
        if dest.get('kind') == 'host':
            raise AppvaultError('%s: destination %s is another inventory host, which only a run from the controller can reach '
                                '(the backup role); give the scheduled job s3, sftp or rclone destinations' % (where, dest.get('name')))
        unknown = sorted(set(dest) - set(_destinations.argument_spec()))
        if unknown:
            raise AppvaultError('%s: destination %s: unknown key %s' % (where, dest.get('name'), ', '.join(unknown)))
        checked.append(_destinations.check(dest))
    config['destinations'] = checked
    check = config['check'] or {}
    config['check'] = dict(max_age=None if check.get('max_age') in (None, '') else _schedule.parse_duration(check['max_age'], 'check.max_age'),
                           min_size=None if check.get('min_size') in (None, '') else _schedule.parse_size(check['min_size'], 'check.min_size'))
    return config


# -- the steps ---------------------------------------------------------------------
def as_owner(argv, owner):
    """``argv`` run as the application's owner (runuser, as root), or as it is when that is who runs already."""
    if not owner or os.geteuid() != 0 or pwd.getpwuid(os.geteuid()).pw_name == owner:
        return list(argv)
    return [_common.find_tool('runuser', 'util-linux'), '-u', owner, '--'] + list(argv)


def app_commands(app, step, log):
    """Run the app's ``step`` commands in its root as its owner; return the last one's stdout."""
    out = ''
    for argv in app['commands'][step]:
        log.info('%s: %s' % (step.replace('_', ' '), ' '.join(argv)))
        try:
            out = _runner.run(as_owner(argv, app['owner']), cwd=app['root']).get('stdout') or ''
        except _runner.CommandError as exc:
            raise AppvaultError('%s command %s failed: %s' % (step, ' '.join(argv), exc.msg))
    return out


def dump_params(db, work_dir, checksums):
    """The dump module's parameters for one resolved database, defaults filled in (backup_create and the scheduled runner)."""
    family = db['module']
    engine = ENGINES[family]
    params = dict((key, spec.get('default')) for key, spec in engine.dump_argument_spec().items())
    if family == 'sqlite':
        params['path'] = db['path']
    else:
        params.update(_preflight.connection_params(db))
        if db.get('schemas'):
            params['schemas'] = db['schemas']
    for key in DUMP_OPTIONS[family]:
        if db['options'].get(key) is not None:
            params[key] = db['options'][key]
    params.update(dest=os.path.join(work_dir, db['id'] + DUMP_SUFFIX[family]), checksums=bool(checksums))
    return params


def dump_all(app, work_dir, checksums, log, known=None):
    """Every database of ``app`` dumped into ``work_dir``; returns the archive entries. The sha256 of each dump file,
    taken as it was written, goes into ``known`` (_archive.KnownDigests), so the archive does not read it again."""
    entries = []
    for db in app['databases']:
        started = time.monotonic()
        result = ENGINES[db['module']].run_dump(dump_params(db, work_dir, checksums), warn=log.warning)
        log.info('dumped database %s (%s %s): %s in %.1f s' % (db['id'], db['engine'], result.get('server_version'),
                                                               _common.human_size(result['artefact']['size']), time.monotonic() - started))
        artefact = result['artefact']
        if known is not None and artefact.get('type') == 'file' and artefact.get('sha256'):
            known.add(artefact['path'], artefact['sha256'])
        entries.append(_manifest.dump_entry(result, db['id']))
    return entries


def dump_and_archive(config, app, version, token, log, dest=None, now=None):
    """Every database dumped into a private work directory, then the archive; the work directory is removed.
    Each dump's sha256, taken as it was written, goes into the archive's manifest without a second read.
    ``config['send_to']`` (_transfer.connection_options): the archive is also streamed to that host while it is written
    (the result's ``sent`` says whether it arrived). ``dest``, ``now``: the archive's path and time, when the caller
    named it (see _archive.create)."""
    work_dir = os.path.join(config['backup_dir'], '.work-%s' % token)
    send_to = config.get('send_to')
    mirror = _transfer.Mirror(**send_to) if send_to else None
    os.mkdir(work_dir, 0o700)
    try:
        known = _archive.KnownDigests()
        entries = dump_all(app, work_dir, config['checksums'], log, known)
        result = _archive.create(config['backup_dir'], dict(name=app['name'], profile=app['profile'], version=version), entries,
                                 app['paths'], root=app['root'], label=config['label'] or None, compression=config['compression'],
                                 recipients=config['recipients'] or None, warn=log.warning, known=known, mirror=mirror,
                                 dest=dest, now=now)
    finally:
        _common.remove_path(work_dir)
    if mirror is not None and result['sent']['sent']:
        log.info('streamed %s to %s while it was written, verified there (%.1f s)' % (result['name'], send_to['dest'], result['sent']['duration']))
    elif mirror is not None:
        log.warning('%s; the archive is complete here' % result['sent']['reason'])
    return result


def retention(backup_dir, keep, log, written=None):
    """Keep the ``keep`` newest valid backups of ``backup_dir`` (pinned ones stay too); returns what prune returns.
    ``written``: the result of the archive just written, whose manifest is then not read again (_catalog.describe)."""
    pruned = _catalog.prune(backup_dir, keep_last=keep, warn=log.warning, written=written)
    removed = ': ' + ', '.join(pruned['removed']) if pruned['removed'] else ''
    log.info('retention (keep %d): kept %d, removed %d%s' % (keep, len(pruned['kept']), len(pruned['removed']), removed))
    return pruned


def copy_to_destinations(config, archive, log):
    """Upload the archive to every destination (verified there, as backup_upload does), then apply each one's
    retention; every destination is tried. Returns the failures as lines naming the destination."""
    failures = []
    for dest in config['destinations']:
        try:
            copy = _destinations.upload(dest, archive, config['rclone_path'])
            log.info('copied to destination %s (%s): %s, verified by %s' % (dest['name'], dest['kind'], copy['url'], copy['verified']))
            rules = dict((key, dest.get(key)) for key in _destinations.RULE_KEYS)
            if all(value is None for value in rules.values()):
                rules['keep_last'] = config['keep']
            pruned = _destinations.prune(dest, rules, rclone_path=config['rclone_path'])
            log.info('destination %s retention: kept %d, removed %d' % (dest['name'], len(pruned['kept']), len(pruned['removed'])))
        except AppvaultError as exc:
            log.error(exc.msg)
            failures.append('%s: %s' % (dest['name'], exc.msg))
    return failures


def backup(config, log):
    """One scheduled backup; returns a summary dict. Raises Locked or AppvaultError."""
    app = config['app']
    backup_dir = config['backup_dir']
    _common.private_dir(backup_dir)
    lock = _catalog.RunLock(backup_dir, 'scheduled-%s' % secrets.token_hex(8))
    try:
        taken = lock.acquire('scheduled backup of %s' % app['name'], lease=config['lock_lease'] or None, pid=os.getpid())
    except AppvaultError as exc:
        if 'holder' in exc.details:
            raise Locked(exc.msg)
        raise
    if taken['recovered']:
        log.warning('took over a stale lock: %s' % taken['recovered'])
    started = time.monotonic()
    try:
        _preflight.run(app, backup_dir, 'backup', config['compression'], config['recipients'] or None)
        version = app['version']
        if version is None and app['commands']['version']:
            version = app_commands(app, 'version', log).strip() or None
        maintenance = config['quiesce'] and bool(app['commands']['maintenance_on'])
        try:
            if maintenance:
                app_commands(app, 'maintenance_on', log)
            archive = dump_and_archive(config, app, version, lock.token, log)
        except BaseException:
            if maintenance:
                try:
                    app_commands(app, 'maintenance_off', log)
                except AppvaultError as exc:  # the first failure is the one reported
                    log.error(exc.msg)
            raise
        if maintenance:
            app_commands(app, 'maintenance_off', log)
        log.info('archive %s written: %s, sha256 %s' % (archive['name'], _common.human_size(archive['size']), archive['sha256']))
        failures = copy_to_destinations(config, archive['path'], log)
        pruned = retention(backup_dir, config['keep'], log, written=archive)
        if failures:
            raise AppvaultError('the backup %s was written here but not copied to every destination: %s'
                                % (archive['name'], '; '.join(failures)))
    finally:
        lock.release()
    return dict(name=archive['name'], path=archive['path'], size=archive['size'], sha256=archive['sha256'],
                duration=round(time.monotonic() - started, 1), removed=pruned['removed'])


# -- the rollback of an interrupted restore --------------------------------------------------------------------------
# Options of a database's ``options`` that roles/restore/tasks/restore_db.yml passes to the restore module.
RESTORE_OPTIONS = {'postgresql': ('jobs', 'terminate_connections'), 'mysql': ('definer', 'definer_account', 'jobs'), 'sqlite': ()}


def restore_params(db, dump, checksums=False, rehearse=True):
    """The restore module's parameters for one resolved database and its extracted ``dump`` (as archive_restore
    returns it), defaults filled in: clean and create, one PostgreSQL job per core, ``rehearse`` for MySQL/MariaDB
    (false: the existing database is dropped and restored into once, for a caller that keeps a copy of it)."""
    family = db['module']
    params = dict((key, spec.get('default')) for key, spec in ENGINES[family].restore_argument_spec().items())
    if family == 'sqlite':
        params['path'] = db['path']
    else:
        params.update(_preflight.connection_params(db), create=True, clean=True)
        if family == 'postgresql':
            params.update(terminate_connections=True, schemas=db.get('schemas') or None, jobs=0)
        else:
            params['rehearse'] = rehearse
    for key in RESTORE_OPTIONS[family]:
        if db['options'].get(key) is not None:
            params[key] = db['options'][key]
    params.update(src=dump['path'], expected_inventory=dump.get('inventory'), checksums=bool(checksums))
    return params


def open_under(paths):
    """Pids of the processes (other than this one) that have a file open at or under one of ``paths``."""
    prefixes = [os.path.abspath(path) for path in paths]
    found = set()
    for pid in os.listdir('/proc'):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            fds = os.listdir('/proc/%s/fd' % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink('/proc/%s/fd/%s' % (pid, fd))
            except OSError:
                continue
            if any(target == prefix or target.startswith(prefix + '/') for prefix in prefixes):
                found.add(int(pid))
                break
    return sorted(found)


def reads_in_parallel(db, entry):
    """Whether the restore of ``db`` reads its dump (manifest ``entry``) in parallel, so that a dump compressed as a
    whole had better come out of the archive decompressed: pg_restore --jobs seeks in it, and each connection of a
    MySQL/MariaDB restore reads a range of it (from a compressed dump every range decompresses all before it)."""
    if db['module'] == 'sqlite':  # restored from a copy beside the database, no jobs
        return False
    jobs = restore_params(db, {'path': None})['jobs']
    if db['module'] == 'postgresql':
        return (jobs or _common.cpu_count()) > 1
    return _mysql.restore_jobs(jobs, entry.get('size') or 0) > 1


def restore_archive(app, src, dumps_dest, keep_previous=None, identity=None, checksums=False, rehearse=True, log=None,
                    verified=None):
    """Restore the archive ``src`` over the resolved environment ``app``: what the restore role's apply step does
    (the backup_restore module) and what the lease's rollback does with the safety snapshot.

    The archive is verified completely while its paths and dumps are written to private stages (see
    _archive.restore). A PostgreSQL dump that is one file is restored into a side database, and verified against
    the inventory recorded at backup time, as soon as the pass has written it and found its sha256 right, while the
    pass goes on with the paths; it is swapped in only once the whole archive is verified and the paths are in place.
    A MySQL/MariaDB dump is read by its restore's check (mysql_restore's scan: complete, its DEFINERs, the tables'
    offsets) at that same moment, beside the rest of the pass. A failure before that changes nothing. Then the
    paths are swapped in (the current ones moved aside), the PostgreSQL databases swapped in, and every other
    database restored from its dump (extracted to ``dumps_dest``)
    with its engine's restore code and verified. ``dumps_dest`` is removed whatever happens. A dump compressed as a
    whole that its restore reads in parallel (reads_in_parallel) comes out of the archive decompressed, by the same
    pass. ``rehearse`` false restores a MySQL/MariaDB database straight over the existing
    one, once, instead of first into a side database (for a caller that keeps a copy of the current state, see
    mysql_restore). ``verified``: a check of the whole archive moments before, trusted while the file is unchanged
    (see _archive.verify). Returns {checksum, databases: {id: summary}, paths: {id: what the swap did}}; raises
    AppvaultError naming the step.
    """
    log = log or Collect()
    databases = dict((db['id'], db) for db in app['databases'])
    if not os.path.isfile(src):
        raise AppvaultError('archive %s does not exist' % src)
    manifest = _manifest.read_from_archive(src, identity, members=False)
    recorded = dict((entry['id'], entry) for entry in manifest['databases'])
    unknown = sorted(ident for ident in recorded if ident not in databases)
    if unknown:
        raise AppvaultError('%s holds database %s, which the environment definition does not name; nothing was changed'
                            % (os.path.basename(src), ', '.join(unknown)))
    decompress = [ident for ident, db in databases.items() if ident in recorded and reads_in_parallel(db, recorded[ident])]
    early = collections.OrderedDict()  # id -> Future of a _postgres.Restored
    scans = collections.OrderedDict()  # id -> Future of the check's scan of a MySQL/MariaDB dump (_mysql.scan_file)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(databases)))
    started = time.monotonic()

    def on_dump(ident, path):
        db = databases[ident]
        if db['module'] == 'postgresql':
            params = restore_params(db, dict(recorded[ident], path=path), checksums)
            early[ident] = pool.submit(_postgres.prepare_restore, params, source_facts=False)
        elif db['module'] == 'mysql':
            # its restore (validate: true here) reads the dump once first, a check that also finds the tables'
            # offsets: done now, beside the rest of the pass
            scans[ident] = pool.submit(_mysql.scan_file, path)

    ready = {}  # id -> _postgres.Restored, once the whole archive is verified
    scanned = {}  # id -> the scan of a MySQL/MariaDB dump, for its restore after the swap

    def before_swap():
        """Wait for every early restore and scan; the first failure is raised once the restores are dropped."""
        failures = []
        for ident, future in early.items():
            try:
                ready[ident] = future.result()
            except Exception as exc:
                failures.append((ident, exc))
        for ident, future in scans.items():
            try:
                scanned[ident] = future.result()
            except Exception as exc:
                failures.append((ident, exc))
        if failures:
            for restored in ready.values():
                restored.abort()
            ident, exc = failures[0]
            raise AppvaultError('restore of database %s failed: %s; nothing was changed (the paths were not swapped in)'
                                % (ident, getattr(exc, 'msg', exc)), **getattr(exc, 'details', {}))

    restored = {}
    try:
        try:
            extracted = _archive.restore(src, path_dest=dict((p['id'], p['path']) for p in app['paths']), dumps_dest=dumps_dest,
                                         owner=app.get('owner'), group=app.get('group'), keep_previous=keep_previous,
                                         identity=identity, decompress=decompress, on_dump=on_dump, before_swap=before_swap,
                                         verified=verified)
        except BaseException:
            for ident, future in early.items():  # the pass failed: whatever was restored beside it goes
                try:
                    future.result().abort()
                except Exception as exc:  # the pass's failure is the one to report
                    log.info('the restore of database %s beside it ended too: %s' % (ident, getattr(exc, 'msg', exc)))
            raise
        log.info('verified %s%s and restored its paths (%s) in %.1f s'
                 % (os.path.basename(src), ' (its whole sha256 as checked before: the file is unchanged)' if extracted.pop('trusted', False) else '',
                    ', '.join(sorted(extracted['paths'])) or 'none', time.monotonic() - started))
        for ident, dump in extracted['databases'].items():
            db = databases[ident]
            begun = time.monotonic()
            try:
                if ident in ready:
                    result = ready.pop(ident).commit()
                    how = 'beside the archive\'s verification'
                else:
                    extra = {'scanned': scanned[ident]} if ident in scanned else {}
                    result = ENGINES[db['module']].run_restore(restore_params(db, dump, checksums, rehearse), source_facts=False,
                                                               **extra)
                    how = 'after it'
            except BaseException as exc:
                for left in ready.values():  # not swapped in: dropped
                    left.abort()
                if isinstance(exc, AppvaultError):
                    raise AppvaultError('restore of database %s failed: %s' % (ident, exc.msg), **exc.details)
                raise
            restored[ident] = dict(engine=db['engine'], name=db.get('name') or db.get('path'), server_version=result.get('server_version'),
                                   tool_version=result.get('tool_version'), duration=result.get('duration'),
                                   created=result.get('database_created'), decompressed=dump.get('decompressed', False))
            log.info('restored database %s (%s) %s and verified it against the backup\'s inventory (%.1f s to put in place)'
                     % (ident, db['engine'], how, time.monotonic() - begun))
    finally:
        pool.shutdown(wait=True)
        _common.remove_path(dumps_dest)
    return dict(checksum=extracted['checksum'], databases=restored, paths=extracted['paths'])


def restore_snapshot(plan):
    """Put the safety snapshot of an interrupted restore back, as the restore role's rescue does: restore_archive with
    the snapshot. ``plan``: ``snapshot`` (archive path), ``app`` (the resolved definition), ``token``, ``keep_previous``,
    ``in_use`` (what the restore's own jobs read and write; the timer waits until no process has them open, see
    open_under). Returns a summary; raises AppvaultError."""
    snapshot = plan['snapshot']
    dumps_dest = os.path.join(os.path.dirname(snapshot), '.rollback-%s' % plan['token'])
    # the app is half restored: nothing of it is worth a side database (rehearse false)
    done = restore_archive(plan['app'], snapshot, dumps_dest, keep_previous=plan.get('keep_previous'), rehearse=False)
    return dict(snapshot=snapshot, databases=sorted(done['databases']), paths=sorted(done['paths']))


def notify(hook, event, log, timeout):
    """Tell the hook's webhook (JSON POST) and command (APPVAULT_* environment) about ``event``; never raises."""
    if hook['webhook']:
        # The scheme is checked in check_config: http or https only.
        request = urllib.request.Request(hook['webhook'], data=json.dumps(event, sort_keys=True).encode('utf-8'),  # noqa: S310
                                         method='POST', headers={'Content-Type': 'application/json', 'User-Agent': 'appvault-run'})
        try:
            # The host has no Ansible, so not ansible.module_utils.urls: the standard library's opener.
            with urllib.request.build_opener().open(request, timeout=timeout) as response:
                log.info('webhook notified (%s): HTTP %d' % (event['status'], response.status))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.error('webhook for %s failed: %s' % (event['status'], getattr(exc, 'reason', None) or exc))
    env = dict(('APPVAULT_%s' % key.upper(), '' if value is None else str(value)) for key, value in event.items())
    for argv in hook['command']:
        try:
            _runner.run(argv, env=env)
            log.info('%s command ran: %s' % (event['status'], argv[0]))
        except _runner.CommandError as exc:
            log.error('%s command failed: %s' % (event['status'], exc.msg))


def run(config, log, random_delay=0):
    """The ``run`` subcommand: back up, notify, and return the exit status."""
    app = config['app']
    if random_delay:
        time.sleep(random.uniform(0, random_delay))  # noqa: S311 - spreading start times, not cryptography
    log.info('scheduled backup of %s into %s started' % (app['name'], config['backup_dir']))
    event = dict(app=app['name'], host=socket.gethostname(), status='success', message='', backup=None, path=None, size=None)
    try:
        summary = backup(config, log)
    except Locked as exc:
        code, event['message'] = EXIT_LOCKED, exc.msg
    except AppvaultError as exc:
        code, event['message'] = EXIT_FAILED, exc.msg
    except (OSError, _runner.CommandError) as exc:
        code, event['message'] = EXIT_FAILED, getattr(exc, 'msg', None) or str(exc)
    else:
        code = EXIT_OK
        event.update(message='backup %s written (%s) in %.1f s' % (summary['name'], _common.human_size(summary['size']), summary['duration']),
                     backup=summary['name'], path=summary['path'], size=summary['size'])
    if code == EXIT_OK:
        log.info(event['message'])
        notify(config['on_success'], event, log, config['hook_timeout'])
    else:
        event['status'] = 'failure'
        log.error('scheduled backup of %s failed: %s' % (app['name'], event['message']))
        notify(config['on_failure'], event, log, config['hook_timeout'])
    return code


def check(config, max_age=None, min_size=None, now=None):
    """The ``check`` subcommand: (exit status, one line) about the newest valid backup, for monitoring."""
    max_age = config['check']['max_age'] if max_age is None else max_age
    min_size = config['check']['min_size'] if min_size is None else min_size
    entries, _ignored = _catalog.list_backups(config['backup_dir'])
    newest = _catalog.latest(entries)
    if newest is None:
        return CHECK_CRITICAL, 'CRITICAL: no valid backup in %s (%d archive%s listed)' % (
            config['backup_dir'], len(entries), '' if len(entries) == 1 else 's')
    age = (now if now is not None else time.time()) - _catalog.parse_time(newest['created_at']).timestamp()
    text = 'newest valid backup %s, %s old, %s' % (newest['name'], _schedule.human_duration(max(age, 0)), _common.human_size(newest['size']))
    problems = []
    if max_age is not None and age > max_age:
        problems.append('older than %s' % _schedule.human_duration(max_age))
    if min_size is not None and newest['size'] < min_size:
        problems.append('smaller than %s' % _common.human_size(min_size))
    if problems:
        return CHECK_CRITICAL, 'CRITICAL: %s: %s' % (text, ' and '.join(problems))
    return CHECK_OK, 'OK: %s' % text


def parser():
    top = argparse.ArgumentParser(prog='appvault-run', description='Scheduled backups of appvault.backup, without Ansible.')
    top.add_argument('--config', required=True, help='the JSON configuration the schedule role wrote')
    sub = top.add_subparsers(dest='command', required=True)
    one = sub.add_parser('run', help='back up now (what the timer or cron entry runs)')
    one.add_argument('--random-delay', type=int, default=0, metavar='SECONDS', help='first wait a random time up to SECONDS')
    mon = sub.add_parser('check', help='exit 2 when the newest valid backup is too old or too small (monitoring)')
    mon.add_argument('--max-age', help='for example 26h or 2d (default: the configuration\'s)')
    mon.add_argument('--min-size', help='for example 1M (default: the configuration\'s)')
    return top


def main(argv=None):
    args = parser().parse_args(argv)
    os.umask(0o077)
    try:
        config = load_config(args.config)
    except AppvaultError as exc:
        sys.stderr.write('appvault-run: %s\n' % exc.msg)
        return EXIT_USAGE if args.command == 'run' else CHECK_UNKNOWN
    if args.command == 'check':
        try:
            max_age = None if args.max_age is None else _schedule.parse_duration(args.max_age, '--max-age')
            min_size = None if args.min_size is None else _schedule.parse_size(args.min_size, '--min-size')
            code, line = check(config, max_age, min_size)
        except AppvaultError as exc:
            code, line = CHECK_UNKNOWN, 'UNKNOWN: %s' % exc.msg
        sys.stdout.write(line + '\n')
        return code
    return run(config, Log('appvault-%s' % config['app']['name']), random_delay=args.random_delay)
