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
import time
from pathlib import Path

import pytest

from ansible_collections.appvault.backup.plugins.module_utils import _inventory
from ansible_collections.appvault.backup.plugins.module_utils._appdef import resolve
from harness.common import ansible_env, run_module, wait_for
from harness.roles import REPO, App, backup, run_book


@pytest.fixture
def pg_app(tmp_path, pg_source, request):
    name = 'role_%s' % request.node.name.split('[')[0][-20:].replace('-', '_')
    app = App(tmp_path, 'postgresql', pg_source, name)
    yield app
    pg_source.drop_db(name)


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
    # Maintenance off did both (no module call of their own): the tasks that do them otherwise were skipped.
    ends = dict((t['task']['name'].split(' : ')[-1], r) for p in data['plays'] for t in p['tasks'] for r in t['hosts'].values()
                if t['task']['name'].endswith(('Release the run lock', 'Remove the safety snapshot (the restore succeeded)')))
    assert len(ends) == 2 and all(r.get('skipped') for r in ends.values()), ends
    # A small app (below appvault_foreground_bytes): the restore's one call ran in the foreground and wrote the safety
    # snapshot first (no task of its own), and the wait was skipped.
    assert all(r.get('skipped') for r in results(data, 'showing progress')), results(data, 'showing progress')
    assert not results(data, 'Start the dumps and the archive'), 'the snapshot had a call of its own'
    applied = results(data, 'Start the restore of the databases and paths')
    assert len(applied) == 1 and 'ansible_job_id' not in applied[0], applied
    assert applied[0]['snapshot']['name'].startswith('fixture-') and applied[0]['snapshot']['name'].endswith('-pre-restore.tar.zst')
    assert applied[0]['log'][1].startswith('safety snapshot %s written' % applied[0]['snapshot']['name']), applied[0]['log']
    # The restore trusted the preflight's check of the whole archive (unchanged since) instead of reading it again.
    assert 'as checked before: the file is unchanged' in applied[0]['log'][2], applied[0]['log']


def results(data, suffix):
    """The host results of the play's tasks whose name ends with ``suffix``."""
    return [r for p in data['plays'] for t in p['tasks'] for r in t['hosts'].values() if t['task']['name'].endswith(suffix)]


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


def test_a_failure_after_the_preflight_took_the_lock_releases_it(pg_app):
    """The restore's preflight call takes the run lock once every check passed and the restore is confirmed; a task
    after it that fails before the restore begins (here the preview, broken by an extra var that set_fact cannot
    override) releases the lock and fails naming that task. Nothing changed."""
    backup(pg_app)
    pg_app.damage()
    damaged = pg_app.state()
    proc, data, failures = run_book('restore.yml', pg_app.inventory, {'appvault_restore_confirm': True, 'restore_entry': 5})
    assert proc.returncode != 0 and failures[-1][1].startswith('Show what will be replaced: '), failures
    assert results(data, 'Release the run lock the preflight took')[0]['changed'] is True
    assert not (pg_app.backups / '.appvault-run.lock').exists()
    assert pg_app.state() == damaged and 'maintenance-on' not in pg_app.events()


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
        # appvault_foreground_bytes 0: the backup and the restore (with its safety snapshot) run as jobs, each waited
        # for with progress lines (what a large app gets)
        proc, data, failures = run_book('backup.yml', app.inventory, {'appvault_backup_quiesce': True, 'appvault_foreground_bytes': 0})
        assert proc.returncode == 0 and not failures, (failures, proc.stdout[-4000:])
        waits = results(data, 'Dump and archive, showing progress')
        assert len(waits) == 1 and not waits[0].get('skipped') and waits[0]['sha256'], waits
        assert app.events()[:3] == ['version', 'maintenance-on', 'maintenance-off'] or 'maintenance-on' in app.events()
        app.damage()
        proc, data, failures = run_book('restore.yml', app.inventory, {'appvault_restore_confirm': True, 'appvault_foreground_bytes': 0})
        assert proc.returncode == 0 and not failures, (failures, proc.stdout[-4000:])
        started = results(data, 'Start the restore of the databases and paths')
        waits = results(data, 'showing progress')
        # one job wrote the safety snapshot and restored: one wait
        assert len(started) == 1 and started[0]['ansible_job_id'] and len(waits) == 1, (started, waits)
        assert not waits[0].get('skipped') and waits[0]['snapshot']['name'].endswith('-pre-restore.tar.zst'), waits
        assert any('as checked before' in line for line in waits[0]['log']), waits[0]['log']
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


def test_the_backup_applies_its_retention_and_keeps_pinned_backups(pg_app):
    first = backup(pg_app)['name']
    pinned = run_module('backup_file', {'path': str(pg_app.backups / first), 'pinned': True})
    assert not pinned.get('failed'), pinned.get('msg')
    names = [backup(pg_app, appvault_backup_keep=1)['name'] for _round in range(2)]
    left = sorted(p.name for p in pg_app.backups.glob('fixture-*.tar.zst'))
    assert left == sorted([first, names[-1]]), left  # the newest, and the pinned one, which does not count


def test_a_failed_rollback_is_reported_with_the_failure(pg_app):
    backup(pg_app)
    (pg_app.root / 'VERSION').write_text('2.0.0\n')  # upgrade runs, and fails after it broke the safety snapshot
    (pg_app.root / 'fail-upgrade').write_text('')
    script = pg_app.root / 'app-cmd'
    script.write_text(script.read_text().replace(
        '  upgrade) if', '  upgrade) for f in %s/*pre-restore*.tar.zst; do : > "$f"; done; if' % pg_app.backups))
    proc, _data, failures = run_book('restore.yml', pg_app.inventory, {'appvault_restore_confirm': True, 'appvault_maintenance_lease': 0})
    assert proc.returncode != 0 and failures
    message = str(failures[-1][1])
    assert 'migration 2026_01 failed' in message, message
    assert 'The rollback to the safety snapshot' in message and 'failed too' in message, message
    assert not (pg_app.root / 'down').exists() and pg_app.events()[-1] == 'maintenance-off', pg_app.events()
    assert not (pg_app.backups / '.appvault-run.lock').exists()


@pytest.fixture(params=['postgresql', 'mariadb'])
def either_app(tmp_path, request):
    server = request.getfixturevalue('pg_source' if request.param == 'postgresql' else 'mysql_source')
    name = 'role_lease_%s' % request.param
    app = App(tmp_path, request.param, server, name)
    yield app
    server.drop_db(name)


def test_the_lease_puts_the_snapshot_back_before_it_ends_maintenance(either_app):
    """The controller dies in the middle of a restore (paths swapped, database not restored yet): when the lease ends,
    the host puts the safety snapshot back - paths and database - and only then switches maintenance off."""
    site = either_app
    snapshot = backup(site)['path']
    before = site.state()
    app = resolve(site.definition())
    lease = dict(state='on', path=str(site.backups), token='dead-run', chdir=str(site.root), lease=600,
                 maintenance_on=app['commands']['maintenance_on'], maintenance_off=app['commands']['maintenance_off'])
    assert not run_module('maintenance', lease).get('failed')
    site.damage()  # what the dead restore had done so far
    plain = dict(app, databases=[dict(db, login_password=None) for db in app['databases']])
    # A job of the dead run still reads its dump: the timer waits for it.
    work = site.backups / '.restore-dead-run'
    work.mkdir()
    (work / 'main.pgdump').write_bytes(b'dump')
    with open(work / 'main.pgdump', 'rb') as held:
        job = subprocess.Popen(['sleep', '120'], stdin=held)
    plan = dict(snapshot=snapshot, app=plain, passwords={'main': site.server.password}, keep_previous=2, in_use=[str(work)])
    armed = run_module('maintenance', dict(lease, maintenance_on=[], lease=3, rollback=plan))
    assert not armed.get('failed'), armed
    assert armed['lease']['rollback'] == snapshot and site.server.password not in json.dumps(armed, default=str)
    state_file = site.backups / '.appvault-maintenance.json'
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    time.sleep(7)
    assert (site.root / 'down').exists() and state_file.exists(), 'the timer fired while a job of the restore still ran'
    assert site.state() != before
    job.kill()
    job.wait()
    assert wait_for(lambda: not (site.root / 'down').exists(), 90), site.events()
    assert site.state() == before
    kept = list(site.root.glob('storage-bak-*'))
    assert len(kept) == 1 and (kept[0] / 'app' / 'attachments' / '2026' / 'file-04.txt').read_text() == 'changed\n'
    fired_file = site.backups / '.appvault-maintenance.fired.json'
    fired = json.loads(fired_file.read_text())
    assert fired['rollback']['databases'] == ['main'] and fired['rollback']['error'] is None, fired
    assert site.server.password not in fired_file.read_text()
    assert site.events()[-1] == 'maintenance-off'
    told = run_module('maintenance', dict(lease, token='next-run', lease=0, maintenance_on=[]))
    assert 'after it had put the safety snapshot %s back' % snapshot in told['expired_earlier'], told


def test_a_rollback_the_lease_cannot_do_leaves_maintenance_on(pg_app):
    snapshot = backup(pg_app)['path']
    app = resolve(pg_app.definition())
    lease = dict(state='on', path=str(pg_app.backups), token='dead-run', chdir=str(pg_app.root), lease=2,
                 maintenance_on=app['commands']['maintenance_on'], maintenance_off=app['commands']['maintenance_off'],
                 rollback=dict(snapshot=snapshot, app=app))
    bad = run_module('maintenance', dict(lease, lease=0))
    assert bad['failed'] and 'needs a lease' in bad['msg']
    assert not run_module('maintenance', lease).get('failed')
    os.unlink(snapshot)  # gone before the lease ends: the half restored app must not be served
    fired_file = pg_app.backups / '.appvault-maintenance.fired.json'
    assert wait_for(fired_file.exists, 30)
    assert (pg_app.root / 'down').exists() and 'maintenance-off' not in pg_app.events()
    told = run_module('maintenance', dict(lease, token='next-run', lease=0, maintenance_on=[], rollback=None))
    assert 'maintenance was left on' in told['expired_earlier'] and 'does not exist' in told['expired_earlier'], told


def test_the_restore_preflight_reads_and_verifies_the_archive_in_one_call(pg_app):
    """app_preflight with archive: the manifest and the whole sha256 are checked while the host is probed (what the
    restore role's preflight does in one call); an archive that cannot be restored is the first problem named."""
    archive = Path(backup(pg_app)['path'])
    args = dict(app=resolve(pg_app.definition()), backup_dir=str(pg_app.backups), mode='restore', archive=str(archive))
    ok = run_module('app_preflight', args)
    assert not ok.get('failed'), ok.get('msg')
    assert ok['backup']['valid'] and ok['backup']['sha256'] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert ok['backup']['verified_identity'] and ok['manifest']['app']['name'] == 'fixture', ok['backup']
    assert [row['item'] for row in ok['report']][:1] and ok['databases'][0]['exists'], ok['report']
    assert 'trusted' not in ok['backup'], ok['backup']

    # A check moments before (the migration's on arrival) is trusted while the file is unchanged, and only then.
    verified = dict(sha256=ok['backup']['sha256'], identity=ok['backup']['verified_identity'])
    trusted = run_module('app_preflight', dict(args, verified=verified))
    assert not trusted.get('failed'), trusted.get('msg')
    assert trusted['backup']['trusted'] is True and trusted['backup']['valid'], trusted['backup']
    assert trusted['backup']['verified_identity'] == verified['identity'] and trusted['backup']['checksum'] == 'ok'
    other = run_module('app_preflight', dict(args, verified=dict(verified, sha256='0' * 64)))
    assert other['backup']['valid'] and 'trusted' not in other['backup'], other['backup']

    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped: only the sha256 can tell
    archive.write_bytes(bytes(data))
    bad = run_module('app_preflight', args)
    assert bad['failed'] and bad['msg'].startswith('preflight found 1 problem, nothing was changed: %s cannot be restored: ' % archive), bad['msg']
    assert 'sha256' in bad['msg'] or 'checksum' in bad['msg'], bad['msg']
    stale = run_module('app_preflight', dict(args, verified=verified))  # the write changed the file's identity
    assert stale['failed'] and 'does not match its checksum file' in stale['msg'], stale['msg']

    both = run_module('app_preflight', dict(args, manifest=ok['manifest']))
    assert both['failed'] and 'mutually exclusive' in both['msg'], both['msg']
    wrong_mode = run_module('app_preflight', dict(args, mode='backup'))
    assert wrong_mode['failed'] and 'give mode=restore' in wrong_mode['msg'], wrong_mode['msg']
    missing = run_module('app_preflight', dict(args, archive=str(archive) + '.gone'))
    assert missing['failed'] and 'archive %s.gone: No such file or directory' % archive in missing['msg'], missing['msg']


def test_the_preflight_takes_the_run_lock_once_every_check_passed(pg_app):
    """app_preflight with lock (what the roles do instead of a run_lock task): a failing check takes no lock and
    creates no backup directory; once every check passed it makes the directory 0700 and takes the lock; another run
    then finds it held, named; check mode writes nothing."""
    app = resolve(pg_app.definition())
    args = dict(app=app, backup_dir=str(pg_app.backups), lock=dict(token='run1', operation='backup', lease=600))
    broken = dict(app, paths=app['paths'] + [dict(app['paths'][0], id='gone', path=str(pg_app.root / 'gone'))])
    failed = run_module('app_preflight', dict(args, app=broken))
    assert failed['failed'] and failed['msg'].startswith('preflight found 1 problem, nothing was changed'), failed['msg']
    assert not pg_app.backups.exists(), 'a failed preflight created the backup directory'

    would = run_module('app_preflight', args, check=True)
    assert not would.get('failed') and would['changed'] and would['lock']['token'] == 'run1', would
    assert not pg_app.backups.exists(), 'check mode wrote the lock'

    taken = run_module('app_preflight', args)
    assert not taken.get('failed') and taken['changed'] and taken['lock']['operation'] == 'backup', taken
    assert stat.S_IMODE(pg_app.backups.stat().st_mode) == 0o700
    held = json.loads((pg_app.backups / '.appvault-run.lock').read_text())
    assert held['token'] == 'run1' and held['expires'] - held['acquired'] == 600, held

    other = run_module('app_preflight', dict(args, lock=dict(token='run2', operation='restore of x')))
    assert other['failed'] and 'is locked: backup on' in other['msg'], other['msg']
    assert json.loads((pg_app.backups / '.appvault-run.lock').read_text())['token'] == 'run1'
    plain = run_module('app_preflight', dict(args, lock=None))
    assert not plain.get('failed') and not plain['changed'] and 'lock' not in plain, plain


def test_with_nothing_after_it_the_backup_job_releases_the_run_lock(pg_app):
    """An app without commands, backed up with no off-host copy and no download: the preflight takes the run lock
    and backup_create releases it (no task of their own); with a download following, the role releases it after."""
    pg_app.write_inventory(appvault_app=dict(pg_app.definition(), commands={}))
    for fetch in (False, True):
        extra = {'appvault_foreground_bytes': 0} if not fetch else {
            'appvault_backup_fetch': True, 'appvault_backup_fetch_dir': str(pg_app.backups.parent / 'fetched')}
        proc, data, failures = run_book('backup.yml', pg_app.inventory, extra)
        assert proc.returncode == 0 and not failures, (failures, proc.stdout[-4000:])
        names = [t['task']['name'].split(' : ')[-1] for p in data['plays'] for t in p['tasks']]
        assert not [n for n in names if n.startswith('Take the run lock')], names
        assert results(data, 'then take the run lock')[0]['lock']['operation'] == 'backup'
        done = [r for r in results(data, 'showing progress') + results(data, 'Start the dumps and the archive')
                if not r.get('skipped') and 'name' in r]
        assert len(done) == 1, done
        released = results(data, 'Release the run lock')
        assert ('lock_released' in done[0]) is not fetch and bool(released[0].get('skipped')) is not fetch, (done, released)
        assert not (pg_app.backups / '.appvault-run.lock').exists()


def test_with_nothing_after_it_the_restore_job_ends_the_run(pg_app):
    """An app with no maintenance, upgrade, restart or health command: the restore's own call disarms the lease,
    releases the run lock and removes the safety snapshot (backup_restore's finish), so the three tasks that do it
    otherwise are skipped; appvault_restore_keep_snapshot still keeps the snapshot. The second restore runs as a job
    (appvault_foreground_bytes 0): its result comes through job_wait."""
    definition = dict(pg_app.definition(), commands={})
    pg_app.write_inventory(appvault_app=definition)
    before = pg_app.state()
    archive = Path(backup(pg_app)['path'])
    ends = ('Maintenance off, the run lock released (and the safety snapshot removed when the restore succeeded)',
            'Release the run lock', 'Remove the safety snapshot (the restore succeeded)')

    for keep in (False, True):
        pg_app.damage()
        extra = {'appvault_restore_confirm': True, 'appvault_restore_keep_snapshot': keep, 'appvault_foreground_bytes': int(not keep) << 30}
        proc, data, failures = run_book('restore.yml', pg_app.inventory, extra)
        assert proc.returncode == 0 and not failures, (failures, proc.stdout[-4000:])
        assert pg_app.state() == before and pg_app.events() == []
        started = results(data, 'Start the restore of the databases and paths')
        waited = [r for r in results(data, 'showing progress') if not r.get('skipped')]
        assert len(started) == 1 and ('ansible_job_id' in started[0]) is keep and len(waited) == int(keep), (started, waited)
        finished = (waited or started)[0]['run_ended']
        assert finished['disarmed'] is True and finished['lock_released'] is True, finished
        skipped = [r.get('skipped') for name in ends for r in results(data, name)]
        assert skipped == [True, True, True], skipped
        assert not (pg_app.backups / '.appvault-run.lock').exists()
        assert not (pg_app.backups / '.appvault-maintenance.json').exists()
        listed = sorted(p.name for p in pg_app.backups.iterdir() if not p.name.startswith('.') and p.name.endswith('.tar.zst'))
        snapshots = [name for name in listed if name.endswith('-pre-restore.tar.zst')]
        assert listed[0] == archive.name and len(snapshots) == int(keep), listed
        assert bool(finished.get('snapshot_removed')) is not keep, finished
