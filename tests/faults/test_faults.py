"""Fault injection: the backup and restore roles interrupted at each phase, against real servers and real tools.

Each case runs the role's playbook with ansible-playbook on localhost while a watcher polls /proc: at the moment the
phase's process appears (pg_dump, mariadb-dump, zstd, tar, pg_restore, the mariadb client) it kills that process or
the module that started it, stops the database server under it, fills the disk under it, or kills the controller.
Other faults are set up before the run (server down, an immutable directory, a failing app command).

After each case: the fault surfaced (the run failed, naming a step); backup_info lists only archives that verify on
their own (sha256 sidecar, zstd, tar); the source app is unchanged and out of maintenance; a restore target is either
exactly as before or exactly restored; no lock is left (a killed controller's lock is stale); the fault is undone and
a rerun succeeds. Security on every run: no database password in any process's argv (sampled from /proc), in the
job output or the files and logs left behind; backup files 0600, directories 0700, unreadable for another user.

Rows for transfer, upload and migrate are added to CASES when those roles exist.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness import procwatch
from harness.common import ansible_env, run_as, run_module, wait_for
from harness.roles import App, book_argv, parse_book

BIG_FILE = 16 * 1024 * 1024  # incompressible: the archive's tar and zstd run long enough to be caught
TMPFS_SIZE = '200m'
CONTROLLER_LEASE = {'backup': 20, 'restore': 45}  # maintenance lease for the killed-controller cases (seconds)


@dataclass
class Case:
    id: str
    operation: str  # backup | restore
    engine: str  # postgresql | mariadb
    phase: str
    fault: str
    trigger: tuple = ()  # (process name, action, Trigger options: argv_has, argv_lacks, sibling); kill_zstd: its zstd
    setup: tuple = ()  # faults prepared before the run
    xfail: str = ''
    extra: dict = field(default_factory=dict)


K, KM, STOP, FILL, CTL, KZ, STOP_NOW = 'kill', 'kill_module', 'stop_server', 'fill_disk', 'kill_controller', 'kill_zstd', 'stop_now'
DUMP_TAR = 'appvault-stage'  # the dump extraction and the path staging of archive_restore
CASES = [
    # backup, PostgreSQL (with maintenance: appvault_backup_quiesce)
    Case('b-pg-dump-kill-pg_dump', 'backup', 'postgresql', 'dump', 'kill -9 pg_dump', ('pg_dump', K, {'argv_has': '--format'})),
    Case('b-pg-dump-kill-zstd', 'backup', 'postgresql', 'dump', 'kill -9 zstd', ('pg_dump', KZ, {'argv_has': '--format'})),
    Case('b-pg-dump-kill-module', 'backup', 'postgresql', 'dump', 'kill -9 module', ('pg_dump', KM, {'argv_has': '--format'})),
    Case('b-pg-dump-server-stopped', 'backup', 'postgresql', 'dump', 'database server stopped', ('pg_dump', STOP, {'argv_has': '--format'})),
    Case('b-pg-dump-disk-full', 'backup', 'postgresql', 'dump', 'disk full', ('pg_dump', FILL, {'argv_has': '--format'}), ('tmpfs',)),
    Case('b-pg-archive-kill-tar', 'backup', 'postgresql', 'archive', 'kill -9 tar', ('tar', K, {'argv_has': '--create'})),
    Case('b-pg-archive-kill-zstd', 'backup', 'postgresql', 'archive', 'kill -9 zstd', ('tar', KZ, {'argv_has': '--create'})),
    Case('b-pg-archive-kill-module', 'backup', 'postgresql', 'archive', 'kill -9 module', ('tar', KM, {'argv_has': '--create'})),
    Case('b-pg-archive-disk-full', 'backup', 'postgresql', 'archive', 'disk full', ('tar', FILL, {'argv_has': '--create'}), ('tmpfs',)),
    Case('b-pg-preflight-server-down', 'backup', 'postgresql', 'preflight', 'database server stopped', (), ('server_down',)),
    Case('b-pg-lock-permission', 'backup', 'postgresql', 'lock', 'permission denied (backup directory immutable)', (),
         ('immutable_backups',)),
    Case('b-pg-maintenance-on-fails', 'backup', 'postgresql', 'maintenance on', 'maintenance_on command fails', (),
         ('fail_maintenance',)),
    Case('b-pg-dump-controller-killed', 'backup', 'postgresql', 'dump', 'controller killed', ('pg_dump', CTL, {'argv_has': '--format'})),
    # backup, MariaDB
    Case('b-my-dump-kill-mariadb-dump', 'backup', 'mariadb', 'dump', 'kill -9 mariadb-dump', ('mariadb-dump', K, {'argv_lacks': '--system'})),
    # mariadb-dump of the fixture ends too fast to be frozen reliably: the server stops as the dump module starts
    Case('b-my-dump-server-stopped', 'backup', 'mariadb', 'dump', 'database server stopped (as the dump module starts)',
         ('python*', STOP_NOW, {'argv_has': 'AnsiballZ_mysql_dump', 'any_owner': True})),
    # restore, PostgreSQL
    Case('r-pg-extract-disk-full', 'restore', 'postgresql', 'verify + extract dumps', 'disk full', ('tar', FILL, {'argv_has': '.restore-'}),
         ('tmpfs',)),
    Case('r-pg-swap-kill-tar', 'restore', 'postgresql', 'file swap', 'kill -9 tar', ('tar', K, {'argv_has': '.storage.appvault-stage'})),
    Case('r-pg-swap-kill-module', 'restore', 'postgresql', 'file swap', 'kill -9 module', ('tar', KM, {'argv_has': '.storage.appvault-stage'})),
    Case('r-pg-swap-permission', 'restore', 'postgresql', 'file swap', 'permission denied (storage immutable)', (),
         ('immutable_storage',)),
    Case('r-pg-db-kill-pg_restore', 'restore', 'postgresql', 'database restore', 'kill -9 pg_restore', ('pg_restore', K, {'argv_has': '--dbname'})),
    Case('r-pg-db-kill-module', 'restore', 'postgresql', 'database restore', 'kill -9 module', ('pg_restore', KM, {'argv_has': '--dbname'})),
    Case('r-pg-db-server-stopped', 'restore', 'postgresql', 'database restore', 'database server stopped', ('pg_restore', STOP, {'argv_has': '--dbname'})),
    Case('r-pg-upgrade-fails', 'restore', 'postgresql', 'upgrade', 'upgrade command fails', (), ('fail_upgrade',)),
    Case('r-pg-db-controller-killed', 'restore', 'postgresql', 'database restore', 'controller killed', ('pg_restore', CTL, {'argv_has': '--dbname'})),
    # restore, MariaDB
    Case('r-my-db-kill-client', 'restore', 'mariadb', 'database restore', 'kill -9 mariadb (client)', ('mariadb', K, {'argv_lacks': '--execute'})),
]


# -- checks ----------------------------------------------------------------------------------------------------------
def verify_archive(path):
    """Independent of the collection: the sidecar's sha256, zstd's own check, tar's listing with the manifest first."""
    side = Path(str(path) + '.sha256')
    if not side.exists():
        return 'no .sha256 sidecar'
    digest = hashlib.sha256()
    with open(path, 'rb') as fileobj:
        for chunk in iter(lambda: fileobj.read(1 << 20), b''):
            digest.update(chunk)
    if side.read_text().split()[0] != digest.hexdigest():
        return 'sha256 mismatch'
    if subprocess.run(['zstd', '-t', '-q', str(path)], capture_output=True, check=False).returncode:
        return 'zstd -t fails'
    listing = subprocess.run(['tar', '--zstd', '-tf', str(path)], capture_output=True, text=True, check=False)
    if listing.returncode or not listing.stdout.startswith('manifest.json\n'):
        return 'tar listing fails'
    return None


def listed_valid(backups):
    """backup_info's catalogue; every archive it calls valid must verify on its own."""
    info = run_module('backup_info', {'path': str(backups)})
    assert not info.get('failed'), info.get('msg')
    problems = []
    names = []
    for entry in info['backups']:
        assert not entry['name'].startswith('.') and '.partial' not in entry['name'], entry
        if entry['valid']:
            names.append(entry['name'])
            problem = verify_archive(backups / entry['name'])
            if problem:
                problems.append('%s: %s' % (entry['name'], problem))
    assert not problems, 'backup_info presents broken archives as valid: %s' % problems
    return names


def modes_problems(backups):
    out = []
    for top, dirs, files in os.walk(backups):
        for name in dirs + ['.']:
            path = os.path.normpath(os.path.join(top, name))
            if stat.S_IMODE(os.lstat(path).st_mode) != 0o700:
                out.append('%s %o' % (path, stat.S_IMODE(os.lstat(path).st_mode)))
        for name in files:
            path = os.path.join(top, name)
            if name == '.filler':
                continue
            if stat.S_IMODE(os.lstat(path).st_mode) != 0o600:
                out.append('%s %o' % (path, stat.S_IMODE(os.lstat(path).st_mode)))
    return out


def secrets_in_files(paths, secrets):
    found = []
    for base in paths:
        base = Path(base)
        files = [base] if base.is_file() else [p for p in base.rglob('*') if p.is_file()]
        for path in files:
            if path.name.endswith(('.tar.zst', '.tar.gz')) or path.name == '.filler':
                continue
            data = path.read_bytes()
            found += ['%s holds %r' % (path, s[:6] + '...') for s in secrets if s.encode() in data]
    return found


def leftovers(app):
    """Hidden things a run left in the backup directory and next to the app's paths."""
    out = sorted(p.name for p in app.backups.iterdir() if p.name.startswith('.') and p.name != '.filler') if app.backups.exists() else []
    # .env-bak-<stamp>: the previous .env a restore keeps by design (appvault_restore_keep_previous), like storage-bak-*
    out += sorted('app/' + p.name for p in app.root.iterdir() if p.name.startswith('.') and p.name != '.env' and '-bak-' not in p.name)
    return out


# -- the runner ------------------------------------------------------------------------------------------------------
class Golden:
    """One backup per engine, made once and copied into each restore case's backup directory (saves a backup run)."""

    def __init__(self, base):
        self.base = base
        self.made = {}

    def get(self, engine, server, secrets):
        if engine not in self.made:
            run = Run(Case('golden-' + engine[:2], 'backup', engine, '', ''), self.base / engine, server, secrets)
            run.prepare()
            proc, data, failures = run.play('backup.yml')
            assert proc.returncode == 0 and not failures, failures
            summary = data['global_custom_stats']['appvault_backup']['localhost']
            self.made[engine] = (Path(summary['path']), run.app.state())
        return self.made[engine]

    def place(self, engine, server, secrets, backups):
        """Copy the engine's backup into ``backups``; return (its name, the app state it holds)."""
        archive, state = self.get(engine, server, secrets)
        for path in (archive, Path(str(archive) + '.sha256')):
            shutil.copy2(path, backups / path.name)
        return archive.name, state


@pytest.fixture(scope='module')
def golden(tmp_path_factory):
    return Golden(tmp_path_factory.mktemp('golden'))


class Run:
    """One case: its app, its watched playbook runs, what it observed."""

    def __init__(self, case, base, server, secrets):
        self.case = case
        self.server = server
        self.secrets = secrets
        self.dbname = ('f_' + case.id.replace('-', '_'))[:40]
        self.app = App(base, case.engine, server, self.dbname)
        (self.app.root / 'storage' / 'app' / 'big.bin').write_bytes(os.urandom(BIG_FILE))
        self.outputs = []
        self.leaks = []
        self.seen = set()
        self.sampled = 0
        self.vars = {'appvault_backup_poll': 1, 'appvault_restore_poll': 1, 'appvault_backup_quiesce': True,
                     'appvault_restore_confirm': True}
        if CTL in case.trigger:
            self.vars.update(appvault_maintenance_lease=CONTROLLER_LEASE[case.operation], appvault_lock_lease=CONTROLLER_LEASE[case.operation])

    def play(self, book, trigger=None):
        watch = procwatch.Watch(self.secrets, [str(self.app.root.parent), self.dbname], trigger)
        proc = procwatch.run_watched(book_argv(book, self.app.inventory, self.vars), ansible_env(), watch)
        self.outputs += [proc.stdout, proc.stderr]
        self.leaks += watch.leaks
        self.seen |= watch.seen_names
        self.sampled += watch.sampled
        data, failures = parse_book(proc)
        return proc, data, failures

    def action(self, name):
        if name == K:
            return procwatch.kill
        if name == KM:
            return procwatch.kill_parent
        if name == CTL:
            return procwatch.kill_controller
        if name == KZ:
            return procwatch.kill_sibling('zstd')
        if name == STOP_NOW:
            return lambda _pid, _watch: self.stop_server()
        if name == STOP:
            return procwatch.while_stopped(self.stop_server)
        if name == FILL:
            return procwatch.while_stopped(lambda: procwatch.fill(self.app.backups))
        raise ValueError(name)

    def stop_server(self):
        self.server.halt()

    def start_server(self):
        self.server.resume()

    def prepare(self):
        self.app.backups.mkdir(mode=0o700)
        if 'tmpfs' in self.case.setup:
            subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%s,mode=0700' % TMPFS_SIZE, 'tmpfs', str(self.app.backups)], check=True)

    def inject(self):
        setup = self.case.setup
        if 'server_down' in setup:
            self.stop_server()
        if 'immutable_backups' in setup:
            subprocess.run(['chattr', '+i', str(self.app.backups)], check=True)
        if 'immutable_storage' in setup:
            subprocess.run(['chattr', '+i', str(self.app.root / 'storage')], check=True)
        if 'fail_maintenance' in setup:
            (self.app.root / 'fail-maintenance').write_text('')
        if 'fail_upgrade' in setup:
            (self.app.root / 'fail-upgrade').write_text('')
            (self.app.root / 'VERSION').write_text('2.0.0\n')

    def undo(self):
        self.start_server()
        for path in (self.app.backups, self.app.root / 'storage'):
            if path.exists():
                subprocess.run(['chattr', '-i', str(path)], check=False)
        for name in ('fail-maintenance', 'fail-upgrade'):
            (self.app.root / name).unlink(missing_ok=True)
        (self.app.backups / '.filler').unlink(missing_ok=True)

    def cleanup(self):
        self.undo()
        if 'tmpfs' in self.case.setup:
            subprocess.run(['umount', '-l', str(self.app.backups)], check=False)
        self.server.drop_db(self.dbname)
        shutil.rmtree(self.app.root.parent, ignore_errors=True)


def server_restarted(case):
    return 'server_down' in case.setup or (case.trigger and case.trigger[1] in (STOP, STOP_NOW))


def without_counters(state):
    db = dict(state[0])
    db.pop('auto_increment', None)
    return (db,) + tuple(state[1:])


def short(text, limit=160):
    text = ' '.join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


@pytest.mark.parametrize('case', [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(reason=c.xfail, strict=True)] if c.xfail else [])
                                  for c in CASES])
def test_fault(case, tmp_path, pg_server, mariadb_server, results, golden):
    base = tmp_path / 'case'
    base.mkdir()
    server = pg_server if case.engine == 'postgresql' else mariadb_server
    secrets = [pg_server.password, mariadb_server.password]
    record = dict(id=case.id, operation=case.operation, engine=case.engine, phase=case.phase, fault=case.fault, passed=False)
    results.append(record)
    started = time.time()
    run = Run(case, base, server, secrets)
    try:
        run.prepare()
        app = run.app
        restored = None
        if case.operation == 'restore':
            run.vars['appvault_restore_backup'], restored = golden.place(case.engine, server, secrets, app.backups)
            app.damage()
        before = app.state()

        # -- the fault
        record['timing'] = {'setup': round(time.time() - started, 1)}
        run.inject()
        trigger = procwatch.Trigger(case.trigger[0], run.action(case.trigger[1]), **case.trigger[2]) if case.trigger else None
        proc, _data, failures = run.play('%s.yml' % case.operation, trigger)
        if trigger:
            assert trigger.fired, 'the trigger (%s) never saw its process; run: %s' % (case.trigger, failures or proc.stderr[-1500:])
            assert not trigger.error, trigger.error
        controller_killed = bool(trigger) and case.trigger[1] == CTL
        assert proc.returncode != 0, 'the run succeeded despite the fault'
        if controller_killed:
            record['failed_at'] = 'controller killed'
            lease = CONTROLLER_LEASE[case.operation]
            assert wait_for(lambda: not (app.root / 'down').exists(), lease + 30), 'the maintenance lease did not end maintenance'
            record['maintenance_off'] = 'by the host-side lease'
        else:
            assert failures, proc.stdout[-2000:]
            record['failed_at'] = failures[-1][0].split(' : ')[-1]
            record['message'] = short(str(failures[-1][1]).replace(str(base), '<case>').replace(run.dbname, '<db>'), 220)
            record['maintenance_off'] = 'by the role (always:)'
            if case.trigger and case.trigger[1] == KM:
                assert 'ended without a result' in str(failures[-1][1]), 'a killed module must be named as such'
        record['timing']['fault'] = round(time.time() - started, 1)
        busy = procwatch.wait_quiet([str(app.root.parent), run.dbname])
        assert not busy, 'processes of the run still going: %s' % busy

        # -- the state it left
        assert not (app.root / 'down').exists(), 'the app is still in maintenance'
        events = app.events()
        if 'maintenance-on' in events:
            assert events.count('maintenance-off') >= 1, events
        run.start_server()  # the inventory of a stopped server cannot be read; its data is what it was
        (app.backups / '.filler').unlink(missing_ok=True)
        # MariaDB recomputes AUTO_INCREMENT counters from the data when it starts: the restart's doing, not the run's
        norm = without_counters if server_restarted(case) and case.engine == 'mariadb' else (lambda state: state)
        before = norm(before)
        after = norm(app.state())
        if case.operation == 'backup':
            assert after == before, 'the backup changed the source app'
            record['target'] = 'source unchanged'
        else:
            assert after in (before, restored), 'the restore left the target half restored'
            record['target'] = 'as before' if after == before else 'restored'
        run.undo()
        valid = listed_valid(app.backups)
        record['listed_valid'] = len(valid)
        record['leftovers'] = leftovers(app)
        lock = app.backups / '.appvault-run.lock'
        if controller_killed:
            holder = json.loads(lock.read_text())
            wait_for(lambda: time.time() > holder['expires'] + 1, CONTROLLER_LEASE[case.operation] + 5)
            record['lock'] = 'left by the dead run, stale (lease expired)'
        else:
            assert not lock.exists(), 'the lock was left behind'
            record['lock'] = 'released'

        # -- the rerun
        record['timing']['checks'] = round(time.time() - started, 1)
        proc, data, failures = run.play('%s.yml' % case.operation)
        assert proc.returncode == 0 and not failures, ('the rerun failed', failures, proc.stdout[-3000:])
        if case.operation == 'backup':
            summary = data['global_custom_stats']['appvault_backup']['localhost']
            assert verify_archive(summary['path']) is None
            assert norm(app.state()) == before
        else:
            assert app.state() == restored, 'the rerun did not restore the backup'
        assert not (app.root / 'down').exists()
        assert not lock.exists()
        record['rerun'] = 'ok'
        record['leftovers_after_rerun'] = leftovers(app)
        assert not record['leftovers_after_rerun'], 'the rerun left garbage behind: %s' % record['leftovers_after_rerun']
        record['timing']['rerun'] = round(time.time() - started, 1)
        record['listed_valid_after_rerun'] = len(listed_valid(app.backups))

        # -- security
        assert not run.leaks, 'a password in a process argv: %s' % run.leaks[:2]
        assert run.seen, 'the sampler saw none of the run\'s processes'
        text = '\n'.join(run.outputs)
        assert not [s for s in secrets if s in text], 'a password in the job output'
        found = secrets_in_files([app.backups, app.root / 'events.log', server.root / 'log' if case.engine == 'postgresql' else server.log], secrets)
        assert not found, found
        assert not modes_problems(app.backups), modes_problems(app.backups)
        archive = app.backups / valid[-1] if valid else next(app.backups.glob('*.tar.zst'))
        assert run_as('nobody', ['cat', str(archive)], check=False).returncode != 0, 'another user can read a backup'
        assert run_as('nobody', ['ls', str(app.backups)], check=False).returncode != 0, 'another user can list the backups'
        record['security'] = 'no password in argv (%d processes sampled) / output / files; modes 0600/0700; other user denied' % run.sampled
        record['passed'] = True
    except BaseException as exc:
        record['error'] = short(exc, 300)
        raise
    finally:
        record['seconds'] = round(time.time() - started, 1)
        run.cleanup()
