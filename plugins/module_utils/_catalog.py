# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backup catalogue: safe names, listing a backup directory, retention, rename/delete/pin, the lock."""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
import time

from ansible_collections.appvault.backup.plugins.module_utils import _common, _manifest
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError

# Longest first: the suffix of an archive name is the first of these it ends with.
ARCHIVE_SUFFIXES = ('.tar.zst.age', '.tar.gz.age', '.tgz.age', '.tar.zst', '.tar.gz', '.tgz', '.tar')
FOREIGN_SUFFIXES = ('.zip',)  # listed (Exment's own backups are zip files), never valid
SAFE_NAME_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9._-]*$')
MAX_NAME = 200
TIMESTAMP_FORMAT = '%Y%m%dT%H%M%SZ'
NAME_TIME_RE = re.compile(r'-(\d{8}T\d{6}Z)(?=[-.])')  # the time in an archive name
CREATED_FORMAT = '%Y-%m-%dT%H:%M:%SZ'
LOCK_NAME = '.appvault.lock'
RUN_LOCK_NAME = '.appvault-run.lock'
# The roles' work directories in the backup directory, named by the run's token (roles/backup create.yml,
# roles/restore apply.yml).
WORK_PREFIXES = ('.work-', '.restore-')
RULES = (
    ('last', None),
    ('daily', '%Y-%m-%d'),
    ('weekly', '%G-W%V'),
    ('monthly', '%Y-%m'),
    ('yearly', '%Y'),
)


# -- names -------------------------------------------------------------------
def check_name(name, what='name'):
    """Refuse anything but ASCII letters, digits, '-', '_' and '.' (no separators, no leading '.' or '-')."""
    if not isinstance(name, str) or not name:
        raise AppvaultError('%s must not be empty' % what)
    if '/' in name or '\\' in name:
        raise AppvaultError('%s %r must not contain a path separator' % (what, name))
    bad = sorted(set(ch for ch in name if not (ch.isascii() and (ch.isalnum() or ch in '._-'))))
    if bad:
        raise AppvaultError('%s %r contains characters that are not allowed: %s (use ASCII letters, digits, "-", "_" and "."; '
                            'half-width kana, full-width characters, spaces and other symbols are refused)'
                            % (what, name, ' '.join(repr(ch) for ch in bad)))
    if name in ('.', '..') or not SAFE_NAME_RE.match(name):
        raise AppvaultError('%s %r must not start with "." or "-"' % (what, name))
    if len(name) > MAX_NAME:
        raise AppvaultError('%s is longer than %d characters' % (what, MAX_NAME))
    return name


def split_suffix(name):
    for suffix in ARCHIVE_SUFFIXES + FOREIGN_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)], suffix
    return name, ''


def archive_name(app, when, label=None, compression='zstd', encrypted=False):
    """``<app>-<UTC yyyymmddThhmmssZ>[-label].tar.zst`` (``.tar.gz`` for gzip, ``.age`` appended when encrypted)."""
    check_name(app, 'app name')
    stem = '%s-%s' % (app, when.strftime(TIMESTAMP_FORMAT))
    if label:
        check_name(label, 'label')
        stem += '-' + label
    name = stem + ('.tar.zst' if compression == 'zstd' else '.tar.gz') + ('.age' if encrypted else '')
    return check_name(name, 'archive name')


def name_time(name):
    """The UTC time in an archive name (``<app>-<yyyymmddThhmmssZ>...``), or None."""
    match = NAME_TIME_RE.search(name)
    if not match:
        return None
    return datetime.datetime.strptime(match.group(1), TIMESTAMP_FORMAT).replace(tzinfo=datetime.timezone.utc)


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def format_time(when):
    return when.astimezone(datetime.timezone.utc).strftime(CREATED_FORMAT)


def parse_time(text):
    return datetime.datetime.strptime(text, CREATED_FORMAT).replace(tzinfo=datetime.timezone.utc)


# -- the lock ---------------------------------------------------------------
def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lock(object):
    """``<dir>/.appvault.lock`` holding ``<pid> <host>``, created with O_EXCL.

    A lock left by a process that no longer exists on this host is stale: it is
    removed and taken over (``recovered`` tells).  A live holder makes
    ``__enter__`` wait up to ``timeout`` seconds, then fail naming the holder.
    """

    def __init__(self, directory, timeout=0):
        self.path = os.path.join(directory, LOCK_NAME)
        self.timeout = timeout
        self.recovered = None
        self.token = '%d %s\n' % (os.getpid(), socket.gethostname())

    def _holder(self):
        try:
            with open(self.path) as fileobj:
                text = fileobj.read(256)
        except FileNotFoundError:
            return None
        parts = text.split()
        try:
            return int(parts[0]), (parts[1] if len(parts) > 1 else ''), text
        except (ValueError, IndexError):
            return 0, '', text

    def __enter__(self):
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                holder = self._holder()
                if holder is None:
                    continue
                pid, host, text = holder
                if host in ('', socket.gethostname()) and (pid <= 0 or not _pid_alive(pid)):
                    # Stale: its owner is gone.  Remove it only if it still is the file we read.
                    if self._holder() == holder:
                        try:
                            os.unlink(self.path)
                        except FileNotFoundError:
                            pass
                        self.recovered = text.strip()
                    continue
                if time.monotonic() >= deadline:
                    raise AppvaultError('%s is locked by process %d on %s (another backup, prune or rename is running); '
                                        'try again later' % (os.path.dirname(self.path), pid, host or 'this host'))
                time.sleep(0.2)
                continue
            with os.fdopen(fd, 'w') as fileobj:
                fileobj.write(self.token)
            return self

    def __exit__(self, *exc):
        holder = self._holder()
        if holder is not None and holder[2] == self.token:
            os.unlink(self.path)
        return False


class RunLock(object):
    """``<dir>/.appvault-run.lock``: held by a whole backup, restore or migration across many module calls.

    The file holds JSON: token, operation, host, pid, acquired, expires.  A role holds it as a lease (no pid;
    renewed by acquiring again with the same token, released in ``always:``); the host-side runner holds it with
    its pid.  It is stale when its lease expired or its pid is dead on this host; a stale lock is moved out of the
    way with one rename (so two contenders cannot both take it over) and reported.
    """

    def __init__(self, directory, token):
        if not token or not isinstance(token, str):
            raise AppvaultError('a run lock needs a token')
        self.directory = directory
        self.path = os.path.join(directory, RUN_LOCK_NAME)
        self.token = token

    def holder(self):
        try:
            with open(self.path) as fileobj:
                text = fileobj.read(4096)
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError(text)
        except ValueError:
            data = dict(token=None, operation='unknown', host='', pid=0, acquired=None, expires=None, unreadable=True)
        return data

    @staticmethod
    def stale_reason(data, now):
        if data.get('unreadable'):
            return 'unreadable lock file'
        if data.get('pid') and data.get('host') in ('', socket.gethostname()) and not _pid_alive(int(data['pid'])):
            return 'process %s is gone' % data['pid']
        expires = data.get('expires')
        if expires is not None and expires <= now:
            return 'lease expired at %s' % format_time(datetime.datetime.fromtimestamp(expires, datetime.timezone.utc))
        return None

    @staticmethod
    def describe(data):
        def when(value):
            return format_time(datetime.datetime.fromtimestamp(value, datetime.timezone.utc)) if value else '?'
        text = '%s on %s since %s' % (data.get('operation') or 'an operation', data.get('host') or '?', when(data.get('acquired')))
        if data.get('pid'):
            text += ' (process %s)' % data['pid']
        if data.get('expires'):
            text += ', lease until %s' % when(data['expires'])
        return text

    def _write(self, data, exclusive):
        text = json.dumps(data, sort_keys=True) + '\n'
        if exclusive:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, 'w') as fileobj:
                fileobj.write(text)
            return
        temp = '%s.%d.tmp' % (self.path, os.getpid())
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as fileobj:
            fileobj.write(text)
        os.rename(temp, self.path)

    def acquire(self, operation, lease=None, pid=None, break_lock=False, check_mode=False):
        """Take (or renew, for the same token) the lock; return dict(changed, lock, recovered)."""
        now = time.time()
        data = dict(token=self.token, operation=operation, host=socket.gethostname(), pid=pid or 0,
                    acquired=int(now), expires=int(now + lease) if lease else None)
        recovered = None
        for _attempt in range(5):
            current = self.holder()
            if current is not None and current.get('token') == self.token:
                data['acquired'] = current.get('acquired') or data['acquired']
                if not check_mode:
                    self._write(data, exclusive=False)
                return dict(changed=False, lock=data, recovered=recovered)
            if current is not None:
                reason = self.stale_reason(current, now)
                if reason is None and not break_lock:
                    raise AppvaultError('%s is locked: %s is running. Wait for it to finish; if you are sure it is dead, '
                                        'run again with the lock broken (break_lock / appvault_lock_break=true)'
                                        % (self.directory, self.describe(current)), holder=current)
                recovered = '%s (%s)' % (self.describe(current), reason or 'broken on request')
                if check_mode:
                    return dict(changed=True, lock=data, recovered=recovered)
                aside = '%s.stale-%d' % (self.path, os.getpid())
                try:
                    os.rename(self.path, aside)  # only one contender can move this file
                except FileNotFoundError:
                    continue
                os.unlink(aside)
                if self.remove_work(current.get('token')):
                    recovered += '; its unfinished work directories were removed'
            if check_mode:
                return dict(changed=True, lock=data, recovered=recovered)
            try:
                self._write(data, exclusive=True)
            except FileExistsError:
                continue
            _common.fsync_dir(self.directory)
            return dict(changed=True, lock=data, recovered=recovered)
        raise AppvaultError('%s: could not take the lock, other processes keep taking it' % self.directory)

    def remove_work(self, token):
        """Remove the work directories (dumps, extracted dumps) a dead run of ``token`` left; True if there were any."""
        if not isinstance(token, str) or not re.match(r'^[A-Za-z0-9_-]+$', token):
            return False
        found = False
        for prefix in WORK_PREFIXES:
            path = os.path.join(self.directory, prefix + token)
            if os.path.isdir(path) and not os.path.islink(path):
                _common.remove_path(path)
                found = True
        return found

    def release(self, check_mode=False, warn=None):
        """Release the lock if this token holds it; one held by another run is left alone, and ``warn`` (a callable)
        is told so."""
        current = self.holder()
        if current is None:
            return dict(changed=False, lock=None)
        if current.get('token') != self.token:
            if warn is not None:
                warn('the lock of %s is held by %s, not by this run; left alone' % (self.directory, self.describe(current)))
            return dict(changed=False, lock=current)
        if not check_mode:
            os.unlink(self.path)
        return dict(changed=True, lock=None)


def take_run_lock(path, token, operation, lease=3600, pid=None, break_lock=False, create=False, check_mode=False):
    """What run_lock does with state=present, also for app_preflight's ``lock``: ``path`` made a 0700 directory first
    when ``create``, then the run lock taken (or renewed) for ``token``. Returns RunLock.acquire's dict, with
    ``directory_changed`` when ``create``."""
    if lease is None or lease < 0:
        raise AppvaultError('lease must be 0 (no expiry) or more seconds, got %s' % lease)
    created = _common.private_dir(path, check_mode=check_mode) if create else None
    if not os.path.isdir(path) and not (created and check_mode):
        raise AppvaultError('%s is not a directory; the lock lives in the backup directory' % path)
    result = RunLock(path, token).acquire(operation, lease=lease or None, pid=pid, break_lock=break_lock, check_mode=check_mode)
    if created is not None:
        result.update(directory_changed=created, changed=result['changed'] or created)
    return result


def lock_argument_spec():
    """The suboptions of a run lock that a module takes for its caller (app_preflight's ``lock``), as run_lock's."""
    return dict(
        token=dict(type='str', required=True, no_log=False),
        operation=dict(type='str', default='operation'),
        lease=dict(type='int', default=3600),
        break_lock=dict(type='bool', default=False),
    )


def verified_argument_spec():
    """The suboptions of ``verified``, a check of the whole archive made moments before (describe, _archive.verify)."""
    return dict(
        sha256=dict(type='str', required=True),
        identity=dict(type='str', required=True),
    )


# -- listing -------------------------------------------------------------------
def is_listed(name):
    if name.startswith('.') or name.endswith('.partial'):
        return False
    if any(name.endswith(s) for s in _manifest.SIDECAR_SUFFIXES):
        return False
    return split_suffix(name)[1] != ''


def describe(path, verify=False, verified=None, written=None):
    """One catalogue entry: what the manifest says, whether the backup is valid and, if not, why.

    ``verified``: dict(sha256, identity) of a check of the whole file against its checksum file moments before (as
    _archive.verify takes it): while the checksum file holds that sha256 and the file's identity is unchanged, ``verify``
    trusts it instead of hashing the whole file again, and says so (``trusted``).
    ``written``: _archive.create's result (path, sha256, manifest) for an archive this process has just written.  For
    that archive, while its checksum file still holds that sha256, the manifest it was written with stands for the one
    inside, which is not read again: reading and checking a member table of 50k files takes 0.3-0.4 s.
    """
    st = os.stat(path)
    name = os.path.basename(path)
    side = _manifest.sidecars(path)
    entry = dict(name=name, path=path, size=st.st_size, mtime=format_time(datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc)),
                 pinned=os.path.exists(side['pin']), encrypted=False, valid=False, reason=None, created_at=None,
                 app=None, profile=None, app_version=None, label=None, engines=[], paths=[], checksum='missing', sha256=None)
    manifest = None
    try:
        container, _compression = _manifest.detect(path)
        entry['encrypted'] = container == 'age'
        if container == 'age':
            if not os.path.exists(side['manifest']):
                raise AppvaultError('encrypted archive without its manifest sidecar %s' % os.path.basename(side['manifest']))
            manifest = _manifest.load_file(side['manifest'], members_required=False, members=False)
        elif container == 'tar':
            manifest = _written_manifest(path, side, written) or _manifest.read_from_archive(path, members=False)
        else:
            raise AppvaultError('not an appvault.backup archive (%s file)' % container)
    except (AppvaultError, OSError) as exc:
        entry['reason'] = getattr(exc, 'msg', None) or str(exc)
        entry['reason'] = entry['reason'].replace(path + ': ', '')
    if manifest is not None:
        entry['created_at'] = manifest.get('created_at')
        app = manifest.get('app') or {}
        entry.update(app=app.get('name'), profile=app.get('profile'), app_version=app.get('version'), label=manifest.get('label'))
        entry['engines'] = [dict(id=d.get('id'), engine=d.get('engine'), server_version=d.get('server_version'))
                            for d in manifest.get('databases', [])]
        entry['paths'] = [p.get('id') for p in manifest.get('paths', [])]
        entry['format_version'] = manifest.get('format_version')
        entry['collection_version'] = manifest.get('collection_version')
    if os.path.exists(side['checksum']):
        entry['checksum'] = 'present'
        try:
            entry['sha256'] = _manifest.read_checksum_file(side['checksum'])
            if verify and _common.still_verified(verified, entry['sha256'], path):
                entry.update(checksum='ok', verified_identity=verified['identity'], trusted=True)
            elif verify:
                before = _common.file_identity(os.stat(path))
                entry['checksum'] = 'ok' if _common.sha256_file(path) == entry['sha256'] else 'mismatch'
                if entry['checksum'] == 'ok' and _common.file_identity(os.stat(path)) == before:
                    entry['verified_identity'] = before  # lets a restore right after trust this check (_archive.verify)
        except AppvaultError as exc:
            entry['checksum'] = 'unreadable'
            entry['reason'] = entry['reason'] or exc.msg
    if manifest is not None and entry['reason'] is None:
        if entry['checksum'] == 'missing':
            entry['reason'] = 'no checksum file %s' % os.path.basename(side['checksum'])
        elif entry['checksum'] == 'mismatch':
            entry['reason'] = 'the archive does not match its checksum file (corrupt or modified)'
        else:
            entry['valid'] = True
    return entry, manifest


def _written_manifest(path, side, written):
    """The manifest of ``written`` (see describe) when it is the archive at ``path`` and its checksum file still holds
    the sha256 it was written with; else None."""
    if not written or os.path.abspath(written.get('path') or '') != os.path.abspath(path) or not written.get('manifest'):
        return None
    try:
        return written['manifest'] if _manifest.read_checksum_file(side['checksum']) == written.get('sha256') else None
    except (AppvaultError, OSError):
        return None


def list_backups(directory, verify=False, written=None):
    """Every archive-like file of ``directory``, newest first; returns (entries, ignored names).  ``written``: see
    describe."""
    if not os.path.isdir(directory):
        raise AppvaultError('backup directory %s does not exist' % directory)
    entries = []
    ignored = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not os.path.isfile(path) or os.path.islink(path):
            continue
        if not is_listed(name):
            if not name.startswith('.') and not any(name.endswith(s) for s in _manifest.SIDECAR_SUFFIXES):
                ignored.append(name)
            continue
        entries.append(describe(path, verify, written=written)[0])
    entries.sort(key=lambda e: (e['created_at'] or e['mtime'], e['name']), reverse=True)
    return entries, ignored


SNAPSHOT_LABEL = 'pre-restore'  # the restore role's safety snapshot


def latest(entries):
    """The newest valid backup that is not a restore's safety snapshot, else the newest valid snapshot, else None.

    A failed restore keeps its snapshot, which is newer than the backup it tried; "latest" must still mean that
    backup, not the state the failed restore started from.
    """
    valid = [entry for entry in entries if entry['valid']]
    for entry in valid:
        if entry.get('label') != SNAPSHOT_LABEL:
            return entry
    return valid[0] if valid else None


# -- retention -----------------------------------------------------------------
def retention(items, keep_last=None, keep_daily=None, keep_weekly=None, keep_monthly=None, keep_yearly=None):
    """Decide which backups to keep (restic's ``forget`` semantics, buckets in UTC).

    ``items``: list of dicts with ``name``, ``created_at`` (datetime, UTC) and ``pinned``.  Every rule runs
    independently over the unpinned backups, newest first: ``last`` keeps the N newest; ``daily`` the newest
    backup of each of the N most recent days that have one (``weekly``: ISO weeks, ``monthly``, ``yearly``
    likewise).  Pinned backups are always kept and do not count towards any rule.  The newest backup is
    always kept, whatever the rules say.  Returns {name: [reasons]} for the kept ones.
    """
    counts = dict(last=keep_last, daily=keep_daily, weekly=keep_weekly, monthly=keep_monthly, yearly=keep_yearly)
    ordered = sorted(items, key=lambda i: (i['created_at'], i['name']), reverse=True)
    kept = {}
    for item in ordered:
        if item.get('pinned'):
            kept.setdefault(item['name'], []).append('pinned')
    rotating = [i for i in ordered if not i.get('pinned')]
    for rule, fmt in RULES:
        count = counts[rule]
        if not count or count < 0:
            continue
        buckets = set()
        for item in rotating:
            bucket = item['name'] if fmt is None else item['created_at'].strftime(fmt)
            if bucket in buckets:
                continue
            if len(buckets) >= count:
                break
            buckets.add(bucket)
            kept.setdefault(item['name'], []).append(rule)
    if ordered and ordered[0]['name'] not in kept:
        kept[ordered[0]['name']] = ['newest']
    return kept


# -- rename, delete, pin ---------------------------------------------------------
def resolve(directory, archive):
    """An archive given as a path, or as a name inside ``directory``."""
    if os.sep in archive or not directory:
        path = os.path.abspath(archive)
    else:
        path = os.path.join(directory, archive)
    if not os.path.isfile(path):
        raise AppvaultError('backup %s does not exist' % path)
    return path


def new_name_for(path, new_name):
    """Validate ``new_name``; keep the archive suffix (added when the new name lacks it)."""
    check_name(new_name, 'new name')
    suffix = split_suffix(os.path.basename(path))[1]
    if suffix and not new_name.endswith(suffix):
        new_name += suffix
        check_name(new_name, 'new name')
    return new_name


def rename(path, new_name):
    """Rename an archive and its sidecars; refuses to overwrite anything.  Returns the new path."""
    new_path = os.path.join(os.path.dirname(path), new_name)
    old_side = _manifest.sidecars(path)
    new_side = _manifest.sidecars(new_path)
    for target in [new_path] + list(new_side.values()):
        if os.path.lexists(target):
            raise AppvaultError('cannot rename %s to %s: %s already exists' % (os.path.basename(path), new_name, target))
    os.rename(path, new_path)
    for role in ('manifest', 'pin'):
        if os.path.exists(old_side[role]):
            os.rename(old_side[role], new_side[role])
    if os.path.exists(old_side['checksum']):
        # The sha256sum line names the file: rewrite it for the new name.
        digest = _manifest.read_checksum_file(old_side['checksum'])
        _manifest.write_checksum_file(new_path, digest)
        os.unlink(old_side['checksum'])
    _common.fsync_dir(os.path.dirname(path))
    return new_path


def delete(path):
    removed = []
    for target in list(_manifest.sidecars(path).values()) + [path]:
        if os.path.lexists(target):
            os.unlink(target)
            removed.append(target)
    _common.fsync_dir(os.path.dirname(path))
    return removed


def set_pinned(path, pinned):
    """Create or remove the ``<archive>.pin`` marker; returns True when something changed."""
    marker = _manifest.sidecars(path)['pin']
    if pinned and not os.path.exists(marker):
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w') as fileobj:
            fileobj.write('pinned %s\n' % format_time(utc_now()))
        return True
    if not pinned and os.path.exists(marker):
        os.unlink(marker)
        return True
    return False


# -- module-level operations --------------------------------------------------------
def info(directory=None, archive=None, verify=False):
    if archive:
        entry, manifest = describe(os.path.abspath(archive), verify)
        return dict(changed=False, backup=entry, manifest=manifest)
    entries, ignored = list_backups(directory, verify)
    newest = latest(entries)
    return dict(changed=False, backups=entries, ignored=ignored, latest=newest['name'] if newest else None,
                latest_path=newest['path'] if newest else None, count=len(entries), table=table(entries))


def table(entries):
    """The catalogue as aligned text lines, newest first (what list.yml prints)."""
    rows = [('name', 'created (UTC)', 'size', 'app version', 'state')]
    for e in entries:
        state = ('valid' if e['valid'] else 'INVALID: %s' % e['reason']) + (', pinned' if e['pinned'] else '')
        rows.append((e['name'], e['created_at'] or e['mtime'], _common.human_size(e['size']), e['app_version'] or '-', state))
    widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
    return ['  '.join(str(value).ljust(widths[i]) if i < 4 else str(value) for i, value in enumerate(row)).rstrip() for row in rows]


def retention_rules(keep_last=None, keep_daily=None, keep_weekly=None, keep_monthly=None, keep_yearly=None):
    """The keep_* rules checked (0 or more); keep_last 7 when none is given."""
    rules = dict(keep_last=keep_last, keep_daily=keep_daily, keep_weekly=keep_weekly, keep_monthly=keep_monthly, keep_yearly=keep_yearly)
    for key, value in rules.items():
        if value is not None and value < 0:
            raise AppvaultError('%s must be 0 or more' % key)
    if all(v is None for v in rules.values()):
        rules['keep_last'] = 7
    return rules


def prune(directory, keep_last=None, keep_daily=None, keep_weekly=None, keep_monthly=None, keep_yearly=None,
          verify=False, check_mode=False, warn=None, written=None):
    """Apply the retention rules to the valid backups of ``directory``; invalid files are never touched.
    ``written``: see describe (the backup that has just written an archive applies the retention)."""
    rules = retention_rules(keep_last, keep_daily, keep_weekly, keep_monthly, keep_yearly)
    with Lock(directory, timeout=30) as lock:
        if lock.recovered and warn:
            warn('removed a stale lock left by a dead process (%s)' % lock.recovered)
        entries, _ignored = list_backups(directory, verify, written)
        valid = [e for e in entries if e['valid']]
        invalid = [dict(name=e['name'], reason=e['reason']) for e in entries if not e['valid']]
        items = [dict(name=e['name'], created_at=parse_time(e['created_at']), pinned=e['pinned']) for e in valid]
        kept = retention(items, **rules)
        removed = [e for e in valid if e['name'] not in kept]
        if not check_mode:
            for entry in removed:
                delete(entry['path'])
    return dict(changed=bool(removed), removed=[e['name'] for e in removed],
                kept=[dict(name=e['name'], created_at=e['created_at'], reasons=kept[e['name']]) for e in valid if e['name'] in kept],
                invalid=invalid, rules=rules)


def manage(path, state='present', rename_to=None, pinned=None, force=False, check_mode=False, warn=None):
    """Rename, delete, pin or unpin one backup under the directory's lock."""
    directory = os.path.dirname(path)
    result = dict(changed=False, path=path, name=os.path.basename(path))
    with Lock(directory, timeout=30) as lock:
        if lock.recovered and warn:
            warn('removed a stale lock left by a dead process (%s)' % lock.recovered)
        if not os.path.isfile(path):
            if state == 'absent':
                return result
            raise AppvaultError('backup %s does not exist' % path)
        is_pinned = os.path.exists(_manifest.sidecars(path)['pin'])
        if state == 'absent':
            if is_pinned and not force:
                raise AppvaultError('%s is pinned; unpin it first or set force: true' % os.path.basename(path))
            result.update(changed=True, removed=[path] + [s for s in _manifest.sidecars(path).values() if os.path.exists(s)])
            if not check_mode:
                delete(path)
            return result
        if rename_to is not None:
            new_name = new_name_for(path, rename_to)
            if new_name != os.path.basename(path):
                new_path = os.path.join(directory, new_name)
                for target in [new_path] + list(_manifest.sidecars(new_path).values()):
                    if os.path.lexists(target):
                        raise AppvaultError('cannot rename %s to %s: %s already exists' % (os.path.basename(path), new_name, target))
                result.update(changed=True, previous_path=path, path=new_path, name=new_name)
                if not check_mode:
                    rename(path, new_name)
                path = new_path
        if pinned is not None and pinned != is_pinned:
            result['changed'] = True
            if not check_mode:
                set_pinned(path, pinned)
        result['pinned'] = is_pinned if pinned is None else pinned
    return result
