"""The backup and restore roles, run through their playbooks on localhost against real PostgreSQL and MariaDB servers.

The molecule scenarios run the same roles on podman hosts over SSH; these run fast and cover the branches
(gate, confirmation, lock, rollback) one by one.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.appvault.backup.plugins.module_utils import _inventory
from harness.common import ansible_env
from harness.compare import pg_inventory
from harness.compare_mysql import mysql_inventory

REPO = Path(__file__).resolve().parents[2]
EVENTS_SCRIPT = """#!/bin/sh
# fixture app command: records when it ran; upgrade fails while $APPROOT/fail-upgrade exists
root=$(dirname "$0")
echo "$1" >> "$root/events.log"
case "$1" in
  maintenance-on) touch "$root/down" ;;
  maintenance-off) rm -f "$root/down" ;;
  version) cat "$root/VERSION" ;;
  upgrade) if [ -e "$root/fail-upgrade" ]; then echo "migration 2026_01 failed" >&2; exit 3; fi ;;
esac
"""


def run_book(playbook, inventory, extra=None):
    argv = [str(Path(sys.executable).parent / 'ansible-playbook'), '-i', str(inventory), str(REPO / 'playbooks' / playbook)]
    if extra:
        argv += ['-e', json.dumps(extra)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=ansible_env(), check=False)
    try:
        data = json.loads(proc.stdout[proc.stdout.index('{'):])
    except ValueError:
        data = {}
    failures = []
    for play in data.get('plays', []):
        for task in play.get('tasks', []):
            for result in task.get('hosts', {}).values():
                if result.get('failed') and not result.get('_ansible_ignore_errors'):
                    failures.append((task['task']['name'], result.get('msg')))
    return proc, data, failures


def informative(value):
    """The inventory without its informational keys (those starting with '_': versions, timings)."""
    if isinstance(value, dict):
        return {k: informative(v) for k, v in value.items() if not str(k).startswith('_')}
    if isinstance(value, list):
        return [informative(v) for v in value]
    return value


def tree(root):
    """path -> (sha256 or link target, mode, uid) for every entry under root."""
    out = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                content = 'link:' + os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                content = 'dir'
            else:
                content = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            out[os.path.relpath(path, root)] = (content, stat.S_IMODE(st.st_mode), st.st_uid)
    return out


class App:
    """A fixture app on this machine: storage tree, .env, command script, one database on a harness server."""

    def __init__(self, base, engine, server, dbname):
        self.root = base / 'app'
        self.backups = base / 'backups'
        self.engine = engine
        self.server = server
        self.dbname = dbname
        storage = self.root / 'storage'
        (storage / 'app' / 'attachments' / '2026' / '請求書').mkdir(parents=True)
        (storage / 'app' / 'empty').mkdir()
        (storage / 'logs').mkdir()
        for i in range(40):
            (storage / 'app' / 'attachments' / '2026' / ('file-%02d.txt' % i)).write_text('attachment %d\n' % i * (i + 1))
        (storage / 'app' / 'attachments' / '2026' / '請求書' / '001.pdf').write_bytes(os.urandom(300000))
        (storage / 'app' / 'attachments' / 'latest').symlink_to('2026/file-01.txt')
        (storage / 'logs' / 'app.log').write_text('started\n')
        os.chmod(storage / 'logs' / 'app.log', 0o640)
        (self.root / '.env').write_text('APP_KEY=base64:abc\nDB_DATABASE=%s\n' % dbname)
        os.chmod(self.root / '.env', 0o600)
        (self.root / 'VERSION').write_text('1.0.0\n')
        script = self.root / 'app-cmd'
        script.write_text(EVENTS_SCRIPT)
        script.chmod(0o755)
        if engine == 'postgresql':
            server.load_fixture(dbname, rows=2000)
        else:
            server.load_fixture(dbname)
        self.inventory = base / 'inventory.json'
        self.write_inventory()

    def definition(self):
        db = dict(id='main', engine=self.engine, name=self.dbname, login_host='127.0.0.1', login_port=self.server.port,
                  login_user='postgres' if self.engine == 'postgresql' else 'root', login_password=self.server.password)
        cmd = str(self.root / 'app-cmd')
        return dict(name='fixture', profile='generic', root=str(self.root), databases=[db],
                    paths=[dict(id='storage', path='storage', exclude=['*.tmp']), dict(id='config', path='.env')],
                    commands=dict(maintenance_on=cmd + ' maintenance-on', maintenance_off=cmd + ' maintenance-off',
                                  version=cmd + ' version', upgrade=cmd + ' upgrade', restart=cmd + ' restart'))

    def write_inventory(self, **overrides):
        host = dict(ansible_connection='local', ansible_python_interpreter=sys.executable, appvault_app=self.definition(),
                    appvault_backup_dir=str(self.backups))
        host.update(overrides)
        self.inventory.write_text(json.dumps({'all': {'children': {'appvault': {'hosts': {'localhost': host}}}}}))

    def state(self):
        if self.engine == 'postgresql':
            db = pg_inventory(self.server, self.dbname)
        else:
            db = mysql_inventory(self.server, self.dbname)
        return informative(db), tree(self.root / 'storage'), (self.root / '.env').read_bytes()

    def events(self):
        path = self.root / 'events.log'
        return path.read_text().split() if path.exists() else []

    def damage(self):
        if self.engine == 'postgresql':
            self.server.psql('DELETE FROM app.audit_log WHERE id % 3 = 0', db=self.dbname)
            self.server.psql('DROP VIEW app.active_users', db=self.dbname)
        else:
            self.server.sql('DELETE FROM audit_log WHERE id % 3 = 0; DROP VIEW project_stats', db=self.dbname)
        (self.root / 'storage' / 'app' / 'attachments' / '2026' / 'file-03.txt').unlink()
        (self.root / 'storage' / 'app' / 'attachments' / '2026' / 'file-04.txt').write_text('changed\n')
        (self.root / '.env').write_text('BROKEN=1\n')


@pytest.fixture
def pg_app(tmp_path, pg_source, request):
    name = 'role_%s' % request.node.name.split('[')[0][-20:].replace('-', '_')
    app = App(tmp_path, 'postgresql', pg_source, name)
    yield app
    pg_source.drop_db(name)


def backup(app, **extra):
    proc, data, failures = run_book('backup.yml', app.inventory, extra)
    assert proc.returncode == 0 and not failures, (failures, proc.stderr[-3000:])
    return data['global_custom_stats']['appvault_backup']['localhost']


def test_backup_damage_restore_postgresql(pg_app):
    before = pg_app.state()
    summary = backup(pg_app)
    archive = Path(summary['path'])
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert stat.S_IMODE(pg_app.backups.stat().st_mode) == 0o700
    assert int(summary['size']) == archive.stat().st_size
    assert summary['sha256'] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert not list(pg_app.backups.glob('.work-*')), 'the dumps were left behind'

    pg_app.damage()
    (pg_app.root / 'VERSION').write_text('1.1.0\n')  # the installed app is newer than the backup: upgrade runs
    assert pg_app.state() != before
    proc, data, failures = run_book('restore.yml', pg_app.inventory, {'appvault_restore_confirm': True})
    assert proc.returncode == 0 and not failures, (failures, proc.stdout[-4000:])

    assert pg_app.state() == before
    events = pg_app.events()
    assert events == ['version', 'version', 'maintenance-on', 'upgrade', 'restart', 'maintenance-off'], events
    assert not (pg_app.root / 'down').exists()
    kept = list(pg_app.root.glob('storage-bak-*'))
    assert len(kept) == 1 and (kept[0] / 'app' / 'attachments' / '2026' / 'file-04.txt').read_text() == 'changed\n'
    stats = data['global_custom_stats']['appvault_restore']['localhost']
    assert stats['name'] == archive.name and stats['upgraded'] is True
    assert stats['sha256'] == summary['sha256'] and stats['checksum'] == 'ok'
    # The safety snapshot was removed after success; only the backup remains, and no lock.
    assert sorted(p.name for p in pg_app.backups.iterdir() if not p.name.startswith('.')) == [archive.name, archive.name + '.sha256']
    assert not (pg_app.backups / '.appvault-run.lock').exists()


def test_failed_upgrade_rolls_back_to_the_state_before_the_restore(pg_app):
    backup(pg_app)
    # The app moves on after the backup: the restore must bring back *this* state when it fails.
    pg_app.server.psql("CREATE TABLE app.after_backup (id int PRIMARY KEY); INSERT INTO app.after_backup VALUES (1), (2)", db=pg_app.dbname)
    (pg_app.root / 'storage' / 'app' / 'attachments' / 'new-after-backup.txt').write_text('new\n')
    (pg_app.root / 'VERSION').write_text('2.0.0\n')
    (pg_app.root / 'fail-upgrade').write_text('')
    before_restore = pg_app.state()

    proc, _data, failures = run_book('restore.yml', pg_app.inventory, {'appvault_restore_confirm': True})
    assert proc.returncode != 0
    message = failures[-1][1]
    assert 'Run the upgrade command' in message and 'migration 2026_01 failed' in message, message
    assert 'rolled back to the safety snapshot' in message
    assert pg_app.state() == before_restore
    events = pg_app.events()
    assert events[-2:] == ['upgrade', 'maintenance-off'], events
    assert not (pg_app.backups / '.appvault-run.lock').exists()
    snapshots = [p.name for p in pg_app.backups.glob('*pre-restore*.tar.zst')]
    assert len(snapshots) == 1, 'the safety snapshot is kept after a failure'


def test_restore_without_confirmation_changes_nothing(pg_app):
    backup(pg_app)
    pg_app.damage()
    damaged = pg_app.state()
    proc, data, failures = run_book('restore.yml', pg_app.inventory)
    assert proc.returncode != 0
    assert 'appvault_restore_confirm=true' in failures[-1][1]
    assert pg_app.state() == damaged
    assert 'maintenance-on' not in pg_app.events()
    shown = [r for p in data['plays'] for t in p['tasks'] if t['task']['name'].endswith('Show what will be replaced')
             for r in t['hosts'].values()]
    preview = shown[0]['msg']
    assert any(line.startswith('database main (postgresql') and 'replaced' in line for line in preview), preview
    assert any(line.startswith('path storage') and 'newest change' in line for line in preview), preview


def test_gate_blocks_a_dump_from_a_newer_postgresql_and_force_needs_a_reason(pg_app):
    backup(pg_app)
    archive = sorted(pg_app.backups.glob('fixture-*.tar.zst'))[-1]
    # Re-label the backup as coming from PostgreSQL 99 by rebuilding it with that server version.
    extract = pg_app.backups.parent / 'extract'
    manifest_fixture = json.loads(subprocess.run(['tar', '--zstd', '-xOf', str(archive), 'manifest.json'],
                                                 capture_output=True, check=True).stdout)
    dump_name = next(d for d in manifest_fixture['databases'] if d['id'] == 'main')['member']
    extract.mkdir()
    subprocess.run(['tar', '--zstd', '-xf', str(archive), '-C', str(extract), dump_name], check=True)
    forged = pg_app.backups.parent / 'forged'
    play = [{'hosts': 'appvault', 'gather_facts': False, 'tasks': [{'appvault.backup.archive_create': {
        'dest_dir': str(forged), 'app': {'name': 'fixture', 'version': '1.0.0'}, 'root': str(pg_app.root),
        'databases': [{'id': 'main', 'path': str(extract / dump_name), 'engine': 'postgresql', 'server_version': '99.1',
                       'inventory': manifest_fixture['databases'][0]['inventory']}],
        'paths': [{'id': 'storage', 'path': 'storage'}, {'id': 'config', 'path': '.env'}]}}]}]
    book = pg_app.backups.parent / 'forge.json'
    book.write_text(json.dumps(play))
    subprocess.run([str(Path(sys.executable).parent / 'ansible-playbook'), '-i', str(pg_app.inventory), str(book)],
                   env=ansible_env(), check=True, capture_output=True)
    forged_archive = sorted(forged.glob('fixture-*.tar.zst'))[-1]

    pg_app.damage()
    damaged = pg_app.state()
    proc, _data, failures = run_book('restore.yml', pg_app.inventory, {'appvault_restore_confirm': True,
                                                                       'appvault_restore_backup': str(forged_archive)})
    assert proc.returncode != 0
    assert 'PostgreSQL 99' in failures[-1][1] and 'older server' in failures[-1][1], failures
    assert pg_app.state() == damaged

    proc, _data, failures = run_book('restore.yml', pg_app.inventory, {'appvault_restore_confirm': True, 'appvault_restore_force': True,
                                                                       'appvault_restore_backup': str(forged_archive)})
    assert proc.returncode != 0 and 'appvault_restore_force_reason' in failures[-1][1]

    proc, _data, failures = run_book('restore.yml', pg_app.inventory, {
        'appvault_restore_confirm': True, 'appvault_restore_force': True, 'appvault_restore_force_reason': 'dump is really from 15',
        'appvault_restore_backup': str(forged_archive)})
    assert proc.returncode == 0, failures
    assert 'FORCED past the gate (dump is really from 15)' in proc.stdout


def test_a_held_lock_stops_the_backup_and_names_the_holder(pg_app):
    pg_app.backups.mkdir(mode=0o700)
    (pg_app.backups / '.appvault-run.lock').write_text(json.dumps(dict(
        token='other', operation='restore of x', host=os.uname().nodename, pid=0, acquired=1, expires=4102444800)))
    proc, _data, failures = run_book('backup.yml', pg_app.inventory)
    assert proc.returncode != 0
    assert 'is locked: restore of x on' in failures[-1][1], failures
    assert json.loads((pg_app.backups / '.appvault-run.lock').read_text())['token'] == 'other'
    assert not list(pg_app.backups.glob('fixture-*'))
    # An expired lease is stale: the next backup takes it over and succeeds.
    (pg_app.backups / '.appvault-run.lock').write_text(json.dumps(dict(
        token='other', operation='restore of x', host=os.uname().nodename, pid=0, acquired=1, expires=2)))
    backup(pg_app)
    assert not (pg_app.backups / '.appvault-run.lock').exists()


def test_bad_definition_is_named_before_anything_runs(pg_app):
    definition = pg_app.definition()
    definition['databases'][0]['engine'] = 'oracle'
    pg_app.write_inventory(appvault_app=definition)
    proc, _data, failures = run_book('backup.yml', pg_app.inventory)
    assert proc.returncode != 0
    assert "engine 'oracle' is not one of postgresql, mysql, mariadb, sqlite" in str(failures), failures
    assert not pg_app.backups.exists()


def test_backup_damage_restore_mariadb(tmp_path, mysql_source):
    app = App(tmp_path, 'mariadb', mysql_source, 'role_app')
    try:
        before = app.state()
        backup(app, appvault_backup_quiesce=True)
        assert app.events()[:3] == ['version', 'maintenance-on', 'maintenance-off'] or 'maintenance-on' in app.events()
        app.damage()
        proc, _data, failures = run_book('restore.yml', app.inventory, {'appvault_restore_confirm': True})
        assert proc.returncode == 0 and not failures, (failures, proc.stdout[-4000:])
        after = app.state()
        assert _inventory.compare(before[0], after[0]) == []
        assert after == before
        assert 'upgrade' not in app.events(), 'same version: no upgrade'
    finally:
        mysql_source.drop_db('role_app')


def test_check_mode_backup_changes_nothing(pg_app):
    proc = subprocess.run([str(Path(sys.executable).parent / 'ansible-playbook'), '-i', str(pg_app.inventory),
                           str(REPO / 'playbooks' / 'backup.yml'), '--check'], capture_output=True, text=True, env=ansible_env(), check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert not pg_app.backups.exists() or not any(pg_app.backups.iterdir())
    assert pg_app.events() == []


def test_fetch_to_the_controller_then_restore_from_the_uploaded_file(pg_app, tmp_path):
    fetched = tmp_path / 'controller'
    summary = backup(pg_app, appvault_backup_fetch=True, appvault_backup_fetch_dir=str(fetched))
    local = fetched / 'localhost' / summary['name']
    assert hashlib.sha256(local.read_bytes()).hexdigest() == summary['sha256']
    assert (fetched / 'localhost' / (summary['name'] + '.sha256')).exists()
    before = pg_app.state()
    # The host loses every backup; the restore uploads the controller's copy and restores it.
    for path in pg_app.backups.iterdir():
        path.unlink()
    pg_app.damage()
    proc, data, failures = run_book('restore.yml', pg_app.inventory, {'appvault_restore_confirm': True, 'appvault_restore_src': str(local)})
    assert proc.returncode == 0 and not failures, failures
    assert pg_app.state() == before
    assert (pg_app.backups / summary['name']).exists()


def test_list_and_prune_playbooks(pg_app):
    names = [backup(pg_app)['name'] for _round in range(3)]
    proc, data, failures = run_book('list.yml', pg_app.inventory)
    assert proc.returncode == 0, failures
    table = next(r for p in data['plays'] for t in p['tasks'] if t['task']['name'] == 'Show the catalogue' for r in t['hosts'].values())['msg']
    assert table[0].split()[:2] == ['name', 'created'] and len(table) == 4
    assert all(any(line.startswith(name) and line.endswith('valid') for line in table) for name in names), table
    assert data['global_custom_stats']['appvault_list']['localhost'] == sorted(names, reverse=True)
    proc, data, failures = run_book('prune.yml', pg_app.inventory, {'appvault_backup_keep': 1})
    assert proc.returncode == 0, failures
    left = sorted(p.name for p in pg_app.backups.glob('fixture-*.tar.zst'))
    assert left == [max(names)]
