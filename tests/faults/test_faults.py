"""Fault injection: the backup and restore roles interrupted at each phase, against real servers and real tools.

Each case runs the role's playbook with ansible-playbook on localhost while a watcher polls /proc: at the moment the
phase's process appears (pg_dump, mariadb-dump, zstd, tar, pg_restore, the mariadb client, rclone, rsync) it freezes
it and kills it or the module that started it, stops the database server, the S3 endpoint or the destination host's
sshd under it, fills the disk under it, or kills the controller. Other faults are set up before the run (server
down, an immutable directory, a failing app command). Each case records what was injected; a case whose fault could
not be injected fails.

After each case: the fault surfaced (the run failed, naming a step); backup_info lists only archives that verify on
their own (sha256 sidecar, zstd, tar); the source app is unchanged and out of maintenance; a restore target is either
exactly as before or exactly restored; no lock is left (a killed controller's lock is stale); the fault is undone and
a rerun succeeds. With a destination (S3 endpoint, another host): nothing there looks valid after the fault, the
rerun's copy verifies there. Security on every run: no database or S3 password in any process's argv (sampled from
/proc), in the job output or the files and logs left behind; backup files 0600, directories 0700, unreadable for
another user.
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
CTL_BEFORE_APPLY = 'kill_controller_before_apply'  # the controller dies as the host is about to start the restore job
K_SEAL = 'kill_module_sealing'  # kill -9 the archiving module while it reads the archive tar writes (sha256, flush)
K_WRITING = 'kill_module_writing'  # kill -9 backup_restore while it writes a path's file to its stage
K_WRITING_TOOL = 'kill_zstd_writing'  # kill -9 backup_restore's zstd while the module writes a path's file to its stage
STOP_S3, STOP_SSHD = 'stop_s3', 'stop_sshd'
OFF_RETRY = 30  # the maintenance module re-arms its timer for at most this long when maintenance_off fails
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
         ('python*', STOP_NOW, {'argv_has': 'AnsiballZ_backup_create', 'any_owner': True})),
    # restore, PostgreSQL
    # The disk fills while backup_restore verifies (reads) the archive: its extraction of the dumps then cannot write
    # (filling it when the extracting tar appears came too late once: the small dump was already written).
    Case('r-pg-extract-disk-full', 'restore', 'postgresql', 'verify + extract dumps', 'disk full',
         ('zstd', FILL, {'argv_has': '-d', 'parent_has': 'AnsiballZ_backup_restore'}), ('tmpfs',)),
    # backup_restore writes the paths to their stages in its verifying pass: killed there, nothing is swapped in
    Case('r-pg-extract-kill-zstd', 'restore', 'postgresql', 'verify + extract paths', 'kill -9 zstd',
         ('zstd', K_WRITING_TOOL, {'argv_has': '-d', 'parent_has': 'AnsiballZ_backup_restore'})),
    Case('r-pg-extract-kill-module', 'restore', 'postgresql', 'verify + extract paths', 'kill -9 module',
         ('zstd', K_WRITING, {'argv_has': '-d', 'parent_has': 'AnsiballZ_backup_restore'})),
    Case('r-pg-swap-permission', 'restore', 'postgresql', 'file swap', 'permission denied (storage immutable)', (),
         ('immutable_storage',)),
    Case('r-pg-db-kill-pg_restore', 'restore', 'postgresql', 'database restore', 'kill -9 pg_restore', ('pg_restore', K, {'argv_has': '--dbname'})),
    Case('r-pg-db-kill-module', 'restore', 'postgresql', 'database restore', 'kill -9 module', ('pg_restore', KM, {'argv_has': '--dbname'})),
    Case('r-pg-db-server-stopped', 'restore', 'postgresql', 'database restore', 'database server stopped', ('pg_restore', STOP, {'argv_has': '--dbname'})),
    Case('r-pg-upgrade-fails', 'restore', 'postgresql', 'upgrade', 'upgrade command fails', (), ('fail_upgrade',)),
    # the restore job writes the safety snapshot first: killed there, nothing was changed and no rollback runs
    Case('r-pg-snapshot-kill-module', 'restore', 'postgresql', 'safety snapshot', 'kill -9 module',
         ('tar', KM, {'argv_has': '--create', 'parent_has': 'AnsiballZ_backup_restore'}), extra={'unchanged': True}),
    Case('r-pg-db-controller-killed', 'restore', 'postgresql', 'database restore', 'controller killed', ('pg_restore', CTL, {'argv_has': '--dbname'})),
    # restore, MariaDB
    Case('r-my-db-kill-client', 'restore', 'mariadb', 'database restore', 'kill -9 mariadb (client)', ('mariadb', K, {'argv_lacks': '--execute'})),
    # backup: verify / seal, upload (S3 endpoint), transfer (host destination: rsync over SSH to a podman host)
    Case('b-pg-seal-kill-module', 'backup', 'postgresql', 'verify + seal', 'kill -9 module (hashing the archive as tar writes it)',
         ('tar', K_SEAL, {'argv_has': '--create'})),
    Case('b-pg-upload-kill-rclone', 'backup', 'postgresql', 'upload', 'kill -9 rclone', ('rclone', K, {'argv_has': 'copyto'}),
         extra={'destination': 's3'}),
    Case('b-pg-upload-endpoint-stopped', 'backup', 'postgresql', 'upload', 'S3 endpoint stopped (network to the destination cut)',
         ('rclone', STOP_S3, {'argv_has': 'copyto'}), extra={'destination': 's3'}),
    Case('b-pg-transfer-kill-rsync', 'backup', 'postgresql', 'transfer', 'kill -9 rsync', ('rsync', K, {'argv_has': '--append-verify'}),
         extra={'destination': 'host'}),
    Case('b-pg-transfer-sshd-stopped', 'backup', 'postgresql', 'transfer', 'sshd of the destination host stopped (network cut)',
         ('rsync', STOP_SSHD, {'argv_has': '--append-verify'}), extra={'destination': 'host'}),
    # restore: the controller dies as the restore job starts (the job then writes the safety snapshot, arms the rollback
    # and restores: the snapshot, the file swap and the database restore run in that one job, so no controller step
    # lies between them); maintenance off
    Case('r-pg-apply-controller-killed', 'restore', 'postgresql', 'as the restore job starts', 'controller killed',
         ('python*', CTL_BEFORE_APPLY, {'argv_has': 'AnsiballZ_backup_restore', 'any_owner': True})),
    Case('r-pg-maintenance-off-fails', 'restore', 'postgresql', 'maintenance off', 'maintenance_off command fails', (),
         ('fail_maintenance_off',), extra={'lease_off': True}),
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
        # appvault_foreground_bytes 0: the dumps, the archive and the restore run as jobs, as a large app's do
        self.vars = {'appvault_backup_poll': 1, 'appvault_restore_poll': 1, 'appvault_backup_quiesce': True,
                     'appvault_restore_confirm': True, 'appvault_foreground_bytes': 0}
        if CTL in case.trigger or CTL_BEFORE_APPLY in case.trigger:
            self.vars.update(appvault_maintenance_lease=CONTROLLER_LEASE[case.operation], appvault_lock_lease=CONTROLLER_LEASE[case.operation])
        if case.extra.get('lease_off'):
            self.vars.update(appvault_maintenance_lease=CONTROLLER_LEASE[case.operation])
        self.s3 = self.host = None
        self.prefix = case.id  # the folder at the destination

    def use_s3(self, endpoint):
        self.s3 = endpoint
        self.use_destination(endpoint.destination(self.prefix))

    def use_host(self, host):
        self.host = host
        self.use_destination(dict(name='standby', kind='host', host='vaulthost', path='/srv/' + self.prefix, address='127.0.0.1',
                                  port=host.port, user='root'), {'vaults': {'hosts': {'vaulthost': host.inventory_host()}}})

    def use_destination(self, destination, groups=None):
        """In the inventory (a destination holds secrets: not in ansible-playbook's argv)."""
        self.destination = destination
        self.app.write_inventory(appvault_backup_destinations=[destination])
        if groups:
            inventory = json.loads(self.app.inventory.read_text())
            inventory['all']['children'].update(groups)
            self.app.inventory.write_text(json.dumps(inventory))

    def destination_files(self):
        """Names at the destination (hidden ones too), or None without a destination."""
        if self.s3:
            folder = self.s3.folder(self.prefix)
            return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
        if self.host:
            return sorted(self.host.sh('[ -d /srv/%s ] && ls -A /srv/%s || true' % (self.prefix, self.prefix)).split())
        return None

    def destination_valid(self):
        """The backups the destination presents as valid (checksum file published), each checked on its own: its
        bytes match the checksum file."""
        valid = []
        if self.s3:
            info = run_module('backup_info', {'destination': self.s3.destination(self.prefix)})
            assert not info.get('failed'), info.get('msg')
            folder = self.s3.folder(self.prefix)
            for entry in info['backups']:
                if entry['valid']:
                    stored = hashlib.sha256((folder / entry['name']).read_bytes()).hexdigest()
                    assert stored == (folder / (entry['name'] + '.sha256')).read_text().split()[0], 'a broken copy is listed valid'
                    valid.append(entry['name'])
        elif self.host:
            for name in self.destination_files():
                if name.endswith('.sha256') and not name.startswith('.'):
                    archive = name[:-len('.sha256')]
                    out = self.host.sh('cd /srv/%s && sha256sum -c %s >/dev/null && echo ok || echo broken' % (self.prefix, name)).strip()
                    assert out == 'ok', '%s is published at the host destination but does not verify' % archive
                    valid.append(archive)
        return valid

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
        if name == K_SEAL:
            return procwatch.kill_module_reading('.partial')
        if name in (K_WRITING, K_WRITING_TOOL):
            return procwatch.kill_while_module_writes('.storage.appvault-stage/', 'module' if name == K_WRITING else 'tool')
        if name == CTL_BEFORE_APPLY:
            return procwatch.kill_controller_before('AnsiballZ_backup_restore')
        if name == STOP_S3:
            return procwatch.while_stopped(self.s3.stop)
        if name == STOP_SSHD:
            return procwatch.while_stopped(self.host.stop_sshd)
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
        if procwatch.port_open(self.server.port):
            raise procwatch.NotInjected('the database server still answers on %d' % self.server.port)
        return 'database server stopped'

    def start_server(self):
        self.server.resume()
        if self.s3:
            self.s3.start()
        if self.host:
            self.host.start_sshd()

    def prepare(self):
        self.app.backups.mkdir(mode=0o700)
        if 'tmpfs' in self.case.setup:
            subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%s,mode=0700' % TMPFS_SIZE, 'tmpfs', str(self.app.backups)], check=True)

    def inject(self):
        """Set up the faults prepared before the run; return what was set up."""
        setup = self.case.setup
        done = []
        if 'server_down' in setup:
            done.append(self.stop_server())
        for what, path in (('immutable_backups', self.app.backups), ('immutable_storage', self.app.root / 'storage')):
            if what in setup:
                subprocess.run(['chattr', '+i', str(path)], check=True)
                flags = subprocess.run(['lsattr', '-d', str(path)], capture_output=True, text=True, check=True).stdout.split()[0]
                assert 'i' in flags, flags
                done.append('chattr +i %s (lsattr: %s)' % (path.name, flags))
        for what, name in (('fail_maintenance', 'fail-maintenance'), ('fail_maintenance_off', 'fail-maintenance-off'),
                           ('fail_upgrade', 'fail-upgrade')):
            if what in setup:
                (self.app.root / name).write_text('')
                done.append('%s command set to fail' % name[len('fail-'):])
        if 'fail_upgrade' in setup:
            (self.app.root / 'VERSION').write_text('2.0.0\n')
        return '; '.join(done)

    def undo(self):
        self.start_server()
        for path in (self.app.backups, self.app.root / 'storage'):
            if path.exists():
                subprocess.run(['chattr', '-i', str(path)], check=False)
        for name in ('fail-maintenance', 'fail-maintenance-off', 'fail-upgrade'):
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


def half(before, restored, after):
    """Which parts of a restore target match the backup and which the state before."""
    parts = ('database', 'files', '.env')
    new = [n for n, a, r in zip(parts, after, restored) if a == r]
    old = [n for n, a, b in zip(parts, after, before) if a == b]
    other = [n for n in parts if n not in new and n not in old]
    return 'HALF restored: %s' % '; '.join(
        text for text in ('%s restored' % ', '.join(new) if new else '', '%s as before' % ', '.join(old) if old else '',
                          '%s neither' % ', '.join(other) if other else '') if text)


def without_counters(state):
    db = dict(state[0])
    db.pop('auto_increment', None)
    return (db,) + tuple(state[1:])


def short(text, limit=160):
    text = ' '.join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


@pytest.mark.parametrize('case', [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(reason=c.xfail, strict=True)] if c.xfail else [])
                                  for c in CASES])
def test_fault(case, tmp_path, pg_server, mariadb_server, results, golden, request):
    base = tmp_path / 'case'
    base.mkdir()
    server = pg_server if case.engine == 'postgresql' else mariadb_server
    secrets = [pg_server.password, mariadb_server.password]
    record = dict(id=case.id, operation=case.operation, engine=case.engine, phase=case.phase, fault=case.fault, passed=False)
    if case.xfail:
        record['known_bug'] = case.xfail
    results.append(record)
    started = time.time()
    run = Run(case, base, server, secrets)
    problems = []  # found, but the case goes on to show what the rerun does; it fails at the end
    try:
        run.prepare()
        app = run.app
        if case.extra.get('destination') == 's3':
            run.use_s3(request.getfixturevalue('s3_endpoint'))
            secrets.append(run.s3.secret)
        elif case.extra.get('destination') == 'host':
            run.use_host(request.getfixturevalue('ssh_host'))
        restored = None
        if case.operation == 'restore':
            run.vars['appvault_restore_backup'], restored = golden.place(case.engine, server, secrets, app.backups)
            app.damage()
        before = app.state()

        # -- the fault
        record['timing'] = {'setup': round(time.time() - started, 1)}
        injected = run.inject()
        trigger = procwatch.Trigger(case.trigger[0], run.action(case.trigger[1]), **case.trigger[2]) if case.trigger else None
        proc, _data, failures = run.play('%s.yml' % case.operation, trigger)
        if trigger:
            assert trigger.fired, 'the trigger (%s) never saw its process; run: %s' % (case.trigger, failures or proc.stderr[-1500:])
            assert not trigger.error, 'the fault was not injected: %s' % trigger.error
            injected = trigger.injected
        record['injected'] = injected
        assert injected, 'the fault was not injected'
        controller_killed = bool(trigger) and case.trigger[1] in (CTL, CTL_BEFORE_APPLY)
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
            if case.trigger and case.trigger[1] in (KM, K_WRITING):
                assert 'ended without a result' in str(failures[-1][1]), 'a killed module must be named as such'
            if case.extra.get('unchanged'):
                assert 'Nothing had been changed yet.' in str(failures[-1][1]), 'the role must say that nothing changed'
        if case.extra.get('lease_off'):
            assert (app.root / 'down').exists(), 'maintenance_off failed, yet the app left maintenance'
            assert 'maintenance_off failed' in str(failures[-1][1]), failures[-1]
            run.undo()  # the command works again: the re-armed host-side timer must now end maintenance by itself
            assert wait_for(lambda: not (app.root / 'down').exists(), OFF_RETRY + 15), 'the re-armed timer did not end maintenance'
            record['maintenance_off'] = 'failed; the host-side timer, re-armed by the failed call, ran it again'
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
            record['target'] = 'as before' if after == before else 'restored' if after == restored else half(before, restored, after)
            if after not in (before, restored):
                problems.append('the restore left the target %s' % record['target'])
        run.undo()
        valid = listed_valid(app.backups)
        record['listed_valid'] = len(valid)
        record['leftovers'] = leftovers(app)
        if run.s3 or run.host:
            at_dest = run.destination_valid()
            record['destination'] = 'valid there: %s; files there: %s' % (len(at_dest), ', '.join(run.destination_files()) or 'none')
            assert not at_dest, 'the destination presents a backup of the failed run as valid: %s' % at_dest
            if run.host:
                shown = [n for n in run.destination_files() if not n.startswith('.')]
                assert not shown, 'files under archive names at the host destination: %s' % shown
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
            if run.s3 or run.host:
                assert [c['name'] for c in summary['destinations'] if not c['failed']] == [run.destination['name']]
                assert run.destination_valid() == [summary['name']], 'the rerun\'s copy is not the one valid backup there'
                record['destination_after_rerun'] = ', '.join(run.destination_files())
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
        assert not problems, problems
        record['passed'] = True
    except BaseException as exc:
        record['error'] = short(exc, 300)
        raise
    finally:
        record['seconds'] = round(time.time() - started, 1)
        run.cleanup()
