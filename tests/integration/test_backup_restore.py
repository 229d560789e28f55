"""backup_restore: every database and path of an archive restored over an app in one module call (real servers)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path


from harness.common import run_module, wait_for
from harness.compare_mysql import mysql_inventory
from harness.roles import informative


def both_states(app, mysql_source):
    return app.state(), informative(mysql_inventory(mysql_source, 'two_my'))


def test_one_call_restores_both_engines_and_the_paths(two_engine_app, pg_source, mysql_source):
    app, definition = two_engine_app
    created = run_module('backup_create', dict(app=definition, backup_dir=str(app.backups), token='b4ckup'))
    assert not created.get('failed'), created.get('msg')
    before = both_states(app, mysql_source)
    app.damage()
    mysql_source.sql('DELETE FROM audit_log WHERE id % 2 = 0; DROP VIEW project_stats', db='two_my')
    assert both_states(app, mysql_source) != before

    dumps = app.backups / '.restore-r1'
    result = run_module('backup_restore', dict(app=definition, src=created['path'], dumps_dest=str(dumps), keep_previous=1))
    assert not result.get('failed'), result.get('msg')
    assert result['changed'] is True and result['checksum'] == 'ok'
    # Both databases and both paths are back exactly, inventories and row counts included.
    assert both_states(app, mysql_source) == before
    assert sorted(result['databases']) == ['main', 'shop'] and sorted(result['paths']) == ['config', 'storage']
    # The PostgreSQL dump (restored with one job per core) came out of the archive decompressed; the MariaDB one did not.
    parallel = len(os.sched_getaffinity(0)) > 1
    assert result['databases']['main']['decompressed'] is parallel and result['databases']['main']['engine'] == 'postgresql'
    assert result['databases']['shop']['decompressed'] is False
    # The damaged tree was moved aside, not deleted; the dumps directory is gone; no password in the whole output.
    previous = Path(result['paths']['storage']['previous'])
    assert previous.name.startswith('storage-bak-') and not (previous / 'app' / 'attachments' / '2026' / 'file-03.txt').exists()
    assert not dumps.exists()
    assert [line.split(' (')[0] for line in result['log'] if line.startswith('restored database')] == [
        'restored database main', 'restored database shop']
    output = result['_run'].stdout + result['_run'].stderr
    assert pg_source.password not in output and mysql_source.password not in output

    # A MariaDB restore over two connections (jobs: 2) reads ranges of the dump: it comes out decompressed too.
    mysql_source.sql('DELETE FROM audit_log WHERE id % 3 = 0; DROP VIEW project_stats', db='two_my')
    shop = dict(definition['databases'][1], options={'jobs': 2})
    parallel_shop = dict(definition, databases=[definition['databases'][0], shop])
    again = run_module('backup_restore', dict(app=parallel_shop, src=created['path'], dumps_dest=str(dumps)))
    assert not again.get('failed'), again.get('msg')
    assert again['databases']['shop']['decompressed'] is True
    assert both_states(app, mysql_source) == before


def test_the_restore_arms_the_rollback_to_its_snapshot_before_it_changes_anything(two_engine_app, pg_source, mysql_source):
    """rollback_lease: the restore role's one call arms the host-side rollback (as maintenance with a rollback plan
    does) and restores; a snapshot that is not there is refused before anything changes."""
    app, definition = two_engine_app
    created = run_module('backup_create', dict(app=definition, backup_dir=str(app.backups), token='b4ckup'))
    assert not created.get('failed'), created.get('msg')
    before = both_states(app, mysql_source)
    app.damage()
    damaged = app.state()
    snapshot = run_module('backup_create', dict(app=definition, backup_dir=str(app.backups), token='sn4p', label='pre-restore'))
    assert not snapshot.get('failed'), snapshot.get('msg')
    dumps = app.backups / '.restore-r5'
    lease_file = app.backups / '.appvault-maintenance.json'

    missing = dict(path=str(app.backups), token='r5', lease=600, snapshot=str(app.backups / 'gone.tar.zst'))
    refused = run_module('backup_restore', dict(app=definition, src=created['path'], dumps_dest=str(dumps), rollback_lease=missing))
    assert refused.get('failed') and 'gone.tar.zst is not a file' in refused['msg'], refused
    assert app.state() == damaged and not lease_file.exists() and not dumps.exists()

    arm = dict(missing, snapshot=snapshot['path'])
    result = run_module('backup_restore', dict(app=definition, src=created['path'], dumps_dest=str(dumps), rollback_lease=arm))
    assert not result.get('failed'), result.get('msg')
    assert both_states(app, mysql_source) == before
    lease = result['lease']
    assert lease['rollback'] == snapshot['path'] and lease['seconds'] == 600 and os.path.exists('/proc/%d' % lease['pid'])
    assert oct(os.stat(lease_file).st_mode & 0o777) == '0o600'
    state = json.loads(lease_file.read_text())
    assert state['token'] == 'r5' and state['pid'] == lease['pid'] and state['chdir'] == definition['root']
    assert state['off'] == definition['commands']['maintenance_off']
    plan = state['rollback']
    assert plan['snapshot'] == snapshot['path'] and plan['in_use'] == [created['path'], str(dumps)] and plan['keep_previous'] is None
    assert [db['id'] for db in plan['app']['databases']] == ['main', 'shop']
    output = result['_run'].stdout + result['_run'].stderr
    assert pg_source.password not in output and mysql_source.password not in output

    # Maintenance off disarms it: the timer stops without putting the snapshot back.
    off = run_module('maintenance', dict(state='off', path=str(app.backups), token='r5'))
    assert not off.get('failed') and off['disarmed'] is True, off
    assert not lease_file.exists() and both_states(app, mysql_source) == before


def test_a_verification_moments_before_spares_the_second_read_only_while_the_file_is_unchanged(two_engine_app, mysql_source):
    """verified: backup_info's check of the whole archive is trusted by the restore while the file's identity (ctime
    included) is the one it had; a file changed since, even with its mtime put back, is hashed again and refused."""
    app, definition = two_engine_app
    created = run_module('backup_create', dict(app=definition, backup_dir=str(app.backups), token='v3rify'))
    assert not created.get('failed'), created.get('msg')
    before = both_states(app, mysql_source)
    info = run_module('backup_info', dict(archive=created['path'], verify=True))['backup']
    assert info['checksum'] == 'ok' and info['sha256'] == created['sha256'] and info['verified_identity'], info
    verified = dict(sha256=info['sha256'], identity=info['verified_identity'])
    dumps = app.backups / '.restore-v1'

    app.damage()
    result = run_module('backup_restore', dict(app=definition, src=created['path'], dumps_dest=str(dumps), verified=verified))
    assert not result.get('failed'), result.get('msg')
    assert result['checksum'] == 'ok' and 'as checked before: the file is unchanged' in result['log'][0], result['log']
    assert both_states(app, mysql_source) == before

    # One byte of the archive changed in place (a member's data, so the pass alone would find it too), its mtime put
    # back: the ctime moved, so the whole file is hashed again and the sidecar's mismatch is what is reported.
    app.damage()
    damaged = app.state()
    archive = Path(created['path'])
    st = archive.stat()
    with open(archive, 'r+b') as fileobj:
        fileobj.seek(st.st_size // 2)
        byte = fileobj.read(1)
        fileobj.seek(st.st_size // 2)
        fileobj.write(bytes([byte[0] ^ 0xFF]))
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns))
    refused = run_module('backup_restore', dict(app=definition, src=created['path'], dumps_dest=str(dumps), verified=verified))
    assert refused.get('failed') and 'does not match its checksum file' in refused['msg'], refused['msg']
    assert app.state() == damaged and not dumps.exists()


def _tarinfo(name, data=b'', kind='file'):
    info = tarfile.TarInfo(name)
    info.mtime, info.mode = 1_700_000_000, 0o600 if kind == 'file' else 0o700
    if kind == 'dir':
        info.type = tarfile.DIRTYPE
    else:
        info.size = len(data)
    return info


PG_MAIN = dict(id='main', member='db/main.pgdump', engine='postgresql', type='file',
               options=dict(format='custom', compression=dict(method='zstd', level=3, how='pipe')), inventory={})


def _archive(directory, dump, database=None):
    """An archive whose database dump ``dump`` (``database``: its manifest entry, by default a PostgreSQL dump
    declared as piped through zstd) and one small path, with a valid sidecar."""
    database = database or PG_MAIN
    members = [(_tarinfo(database['member'], dump), dump), (_tarinfo('files/storage', kind='dir'), b''),
               (_tarinfo('files/storage/a.txt', b'new\n'), b'new\n')]
    table = {}
    for info, data in members:
        meta = dict(type='dir' if info.isdir() else 'file', mode=info.mode, uid=0, gid=0, mtime=info.mtime)
        if info.isreg():
            meta.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
        table[info.name] = meta
    manifest = dict(format='appvault.backup', format_version=1, collection_version='0.1.0', created_at='2025-01-01T00:00:00Z',
                    app=dict(name='fixture'), host={}, paths=[dict(id='storage', member='files/storage', present=True)],
                    databases=[database], members=table)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode='w', format=tarfile.PAX_FORMAT) as tar:
        data = json.dumps(manifest).encode()
        tar.addfile(_tarinfo('manifest.json', data), io.BytesIO(data))
        for info, payload in members:
            tar.addfile(info, io.BytesIO(payload) if info.isreg() else None)
    compressed = subprocess.run(['zstd', '-q', '-c'], input=raw.getvalue(), capture_output=True, check=True).stdout
    path = Path(directory) / 'fixture-20250101T000000Z.tar.zst'
    path.write_bytes(compressed)
    Path(str(path) + '.sha256').write_text('%s  %s\n' % (hashlib.sha256(compressed).hexdigest(), path.name))
    return path


def test_a_dump_that_cannot_be_decompressed_changes_nothing(two_engine_app, pg_source):
    """Its sha256 matches the manifest, but it is no zstd data: refused in the verifying pass, before any swap."""
    app, definition = two_engine_app
    app.backups.mkdir()
    archive = _archive(app.backups, b'PGDMP but not zstd data\n' * 100)
    before = app.state()
    dumps = app.backups / '.restore-r2'
    parallel = dict(definition['databases'][0], options={'jobs': 2})  # a parallel pg_restore: the dump is decompressed
    only = dict(definition, databases=[parallel], paths=definition['paths'][:1])
    result = run_module('backup_restore', dict(app=only, src=str(archive), dumps_dest=str(dumps)))
    assert result.get('failed')
    assert "member 'db/main.pgdump' matches its sha256 but could not be written out decompressed" in result['msg'], result['msg']
    assert 'nothing was changed' in result['msg']
    assert app.state() == before
    assert not dumps.exists() and sorted(os.listdir(app.root)) == sorted(['storage', '.env', 'VERSION', 'app-cmd'])


def test_an_incomplete_mysql_dump_is_found_before_any_path_is_swapped_in(two_engine_app):
    """Its sha256 matches, but it lacks the dump tools' completion line. The restore's check reads it beside the
    rest of the pass, as soon as it is written out: refused before the paths are swapped in, nothing changed."""
    app, definition = two_engine_app
    app.backups.mkdir()
    sql = b'-- MariaDB dump 10.19  Distrib 10.11.6-MariaDB\n-- Server version\t10.11.6-MariaDB\n' + \
        b'-- Table structure for table `t`\nCREATE TABLE `t` (i INT);\nINSERT INTO `t` VALUES (1);\n' * 2000
    dump = subprocess.run(['zstd', '-q', '-c'], input=sql, capture_output=True, check=True).stdout
    shop = dict(id='shop', member='db/shop.sql', engine='mariadb', type='file',
                options=dict(compression=dict(method='zstd', level=3, how='pipe')), inventory={})
    archive = _archive(app.backups, dump, shop)
    before = app.state()
    only = dict(definition, databases=[definition['databases'][1]], paths=definition['paths'][:1])
    dumps = app.backups / '.restore-r5'
    result = run_module('backup_restore', dict(app=only, src=str(archive), dumps_dest=str(dumps)))
    assert result.get('failed')
    assert result['msg'].startswith('restore of database shop failed: '), result['msg']
    assert 'is not a complete MySQL/MariaDB dump' in result['msg'], result['msg']
    assert 'nothing was changed (the paths were not swapped in)' in result['msg'], result['msg']
    assert app.state() == before and not dumps.exists()
    assert not [name for name in os.listdir(app.root) if '-bak-' in name or 'appvault-stage' in name]


def test_a_database_the_definition_does_not_name_is_refused_first(two_engine_app, mysql_source):
    app, definition = two_engine_app
    created = run_module('backup_create', dict(app=definition, backup_dir=str(app.backups), token='b4ckup2'))
    assert not created.get('failed'), created.get('msg')
    app.damage()
    damaged = app.state()
    result = run_module('backup_restore', dict(app=dict(definition, databases=definition['databases'][:1]), src=created['path']))
    assert result.get('failed')
    assert 'holds database shop, which the environment definition does not name; nothing was changed' in result['msg'], result['msg']
    assert app.state() == damaged
    assert not [name for name in os.listdir(app.backups) if name.startswith('.restore-')]


def _side_databases(pg_source):
    return pg_source.psql("SELECT datname FROM pg_database WHERE datname LIKE '%appvault%'", db='postgres').split()


def test_a_database_restore_that_fails_beside_the_pass_changes_nothing(two_engine_app, pg_source, mysql_source):
    """The PostgreSQL restore runs while the pass still writes the paths; when it fails, no path is swapped in."""
    app, definition = two_engine_app
    created = run_module('backup_create', dict(app=definition, backup_dir=str(app.backups), token='b4ckup3'))
    assert not created.get('failed'), created.get('msg')
    app.damage()
    damaged = both_states(app, mysql_source)
    wrong = dict(definition, databases=[dict(definition['databases'][0], login_password='not-the-password-7'), definition['databases'][1]])
    result = run_module('backup_restore', dict(app=wrong, src=created['path']))
    assert result.get('failed')
    assert result['msg'].startswith('restore of database main failed: '), result['msg']
    assert 'nothing was changed (the paths were not swapped in)' in result['msg'], result['msg']
    assert both_states(app, mysql_source) == damaged
    assert not [name for name in os.listdir(app.root) if '-bak-' in name or 'appvault-stage' in name]
    assert 'not-the-password-7' not in result['_run'].stdout + result['_run'].stderr


def test_a_corrupt_archive_drops_what_was_restored_beside_the_pass(two_engine_app, pg_source, mysql_source):
    """The dump at the start is sound, so its restore starts; a flipped byte near the end (the files) fails the
    archive: the side database goes, the sidecar mismatch is what is reported, nothing changed."""
    app, definition = two_engine_app
    created = run_module('backup_create', dict(app=definition, backup_dir=str(app.backups), token='b4ckup4'))
    assert not created.get('failed'), created.get('msg')
    archive = Path(created['path'])
    data = bytearray(archive.read_bytes())
    data[-200] ^= 0x55
    archive.write_bytes(bytes(data))
    app.damage()
    damaged = both_states(app, mysql_source)
    result = run_module('backup_restore', dict(app=definition, src=str(archive)))
    assert result.get('failed')
    assert 'does not match its checksum file' in result['msg'] and 'nothing was changed' in result['msg'], result['msg']
    assert both_states(app, mysql_source) == damaged
    assert _side_databases(pg_source) == []
    assert not [name for name in os.listdir(app.root) if '-bak-' in name or 'appvault-stage' in name]


def test_migrate_verify_compares_databases_and_trees_and_names_each_difference(two_engine_app, mysql_source):
    """migrate_verify reads the trees in a thread while the servers compute the checksums: the rows keep the
    manifest's order (databases, then paths) and each difference is found on its own row."""
    app, definition = two_engine_app
    created = run_module('backup_create', dict(app=definition, backup_dir=str(app.backups), token='v3rify'))
    assert not created.get('failed'), created.get('msg')
    same = run_module('migrate_verify', dict(app=definition, archive=created['path']))
    assert not same.get('failed'), same.get('msg')
    assert same['equal'] is True
    assert [(row['kind'], row['id']) for row in same['rows']] == [
        ('database', 'main'), ('database', 'shop'), ('path', 'storage'), ('path', 'config')]
    assert all(row['equal'] and row['source'] == row['target'] for row in same['rows']), same['rows']
    assert all('per-table checksums' in row['compared'] for row in same['rows'][:2])

    # One changed value (row counts unchanged: only the checksum tells) and one changed file.
    app.server.psql("UPDATE app.audit_log SET action = action || 'x' WHERE id = (SELECT min(id) FROM app.audit_log)", db=app.dbname)
    (app.root / 'storage' / 'app' / 'attachments' / '2026' / 'file-04.txt').write_text('changed\n')
    differs = run_module('migrate_verify', dict(app=definition, archive=created['path']))
    rows = dict(((row['kind'], row['id']), row) for row in differs['rows'])
    assert differs['equal'] is False
    assert rows[('database', 'shop')]['equal'] and rows[('path', 'config')]['equal']
    assert not rows[('database', 'main')]['equal'] and any('audit_log' in d for d in rows[('database', 'main')]['differences'])
    assert rows[('path', 'storage')]['differences'] == ['app/attachments/2026/file-04.txt: differs']
    assert rows[('database', 'main')]['source'] == rows[('database', 'main')]['target']  # same counts, other content
    output = differs['_run'].stdout + differs['_run'].stderr
    assert app.server.password not in output and mysql_source.password not in output


def test_finish_ends_the_run_in_the_same_call_once_the_restore_succeeded(two_engine_app, pg_source, mysql_source):
    """finish: with nothing left to run after the restore, the same call disarms the lease, releases the run lock and
    removes the safety snapshot (what maintenance state=off does); an app with maintenance_off commands is refused
    before anything changes, and a run it cannot end leaves the restore done and says why."""
    app, full = two_engine_app
    definition = dict(full, commands=dict(full['commands'], maintenance_on=[], maintenance_off=[]))
    created = run_module('backup_create', dict(app=definition, backup_dir=str(app.backups), token='b4ckup'))
    assert not created.get('failed'), created.get('msg')
    before = both_states(app, mysql_source)
    lease_file = app.backups / '.appvault-maintenance.json'
    lock_file = app.backups / '.appvault-run.lock'

    def damaged_run(token):
        app.damage()
        snapshot = run_module('backup_create', dict(app=definition, backup_dir=str(app.backups), token=token, label='pre-restore'))
        assert not snapshot.get('failed'), snapshot.get('msg')
        lock = run_module('run_lock', dict(path=str(app.backups), token=token, operation='restore'))
        assert not lock.get('failed') and lock_file.exists(), lock
        return snapshot, dict(path=str(app.backups), token=token, lease=600, snapshot=snapshot['path'])

    snapshot, arm = damaged_run('f1n1sh')
    damaged = app.state()
    end = dict(path=str(app.backups), token='f1n1sh', remove_snapshot=snapshot['path'])
    refused = run_module('backup_restore', dict(app=full, src=created['path'], rollback_lease=arm, finish=end))
    assert refused.get('failed') and 'maintenance_off commands' in refused['msg'], refused
    assert app.state() == damaged and not lease_file.exists() and lock_file.exists()

    result = run_module('backup_restore', dict(app=definition, src=created['path'], rollback_lease=arm, finish=end))
    assert not result.get('failed'), result.get('msg')
    assert both_states(app, mysql_source) == before
    finished = result['run_ended']
    assert finished['disarmed'] is True and finished['lock_released'] is True, finished
    assert sorted(finished['snapshot_removed']) == [snapshot['path'], snapshot['path'] + '.sha256'], finished
    assert not lease_file.exists() and not lock_file.exists() and not os.path.exists(snapshot['path'])
    assert 'finish_failed' not in result
    timer = '/proc/%d' % result['lease']['pid']
    assert wait_for(lambda: not os.path.exists(timer), 5), 'the disarmed timer still runs'

    # A pinned snapshot cannot be removed: the restore is done, the lease disarmed and the lock released all the same;
    # finish_failed says why, and run_ended is not returned (the caller removes the snapshot itself).
    snapshot, arm = damaged_run('p1nned')
    pinned = run_module('backup_file', dict(path=snapshot['path'], pinned=True))
    assert not pinned.get('failed'), pinned
    end = dict(path=str(app.backups), token='p1nned', remove_snapshot=snapshot['path'])
    result = run_module('backup_restore', dict(app=definition, src=created['path'], rollback_lease=arm, finish=end))
    assert not result.get('failed'), result.get('msg')
    assert both_states(app, mysql_source) == before
    assert 'run_ended' not in result and 'is pinned' in result['finish_failed'], result
    assert any('ending its run failed' in w for w in result.get('warnings', [])), result.get('warnings')
    assert os.path.exists(snapshot['path']) and not lease_file.exists() and not lock_file.exists()


def test_the_snapshot_is_written_first_in_the_same_call_at_the_path_the_caller_named(two_engine_app, pg_source, mysql_source):
    """snapshot: the restore's one call writes the safety snapshot of the current state (as backup_create does) before
    it changes anything, at the path its caller named; a name backup_create would not give is refused before anything
    is written; a restore that fails after it names it; a lease that expired meanwhile stops the restore."""
    app, definition = two_engine_app
    created = run_module('backup_create', dict(app=definition, backup_dir=str(app.backups), token='b4ckup'))
    assert not created.get('failed'), created.get('msg')
    before = both_states(app, mysql_source)
    app.damage()
    damaged = both_states(app, mysql_source)
    lease_file = app.backups / '.appvault-maintenance.json'
    dest = app.backups / 'fixture-20260101T030000Z-pre-restore.tar.zst'

    def snap(name=dest.name, **extra):
        return dict(dict(databases=['main', 'shop'], dest=str(app.backups / name), token='sn4p'), **extra)

    def files():
        return sorted(os.listdir(app.backups))

    listed = files()
    for name, why in (('other-20260101T030000Z-pre-restore.tar.zst', 'fixture-'), ('fixture-pre-restore.tar.zst', 'named as'),
                      ('fixture-20260101T030000Z-pre-restore.tar.gz', 'pre-restore.tar.zst')):
        refused = run_module('backup_restore', dict(app=definition, src=created['path'], snapshot=snap(name)))
        assert refused.get('failed') and 'must be named as backup_create names' in refused['msg'] and why in refused['msg'], refused
        assert both_states(app, mysql_source) == damaged and files() == listed
    arm = dict(path=str(app.backups), token='r7', lease=600)
    refused = run_module('backup_restore', dict(app=definition, src=created['path'], rollback_lease=arm))
    assert refused.get('failed') and 'rollback_lease.snapshot is required unless snapshot is set' in refused['msg'], refused

    # The archive to restore is corrupt (one byte flipped): the snapshot is written first, then the restore is refused
    # and its failure names the snapshot, which holds the state before.
    corrupt = app.backups / 'fixture-20250101T030000Z-corrupt.tar.zst'
    data = bytearray(Path(created['path']).read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    shutil.copy(created['path'] + '.sha256', str(corrupt) + '.sha256')
    failed = run_module('backup_restore', dict(app=definition, src=str(corrupt), snapshot=snap(), rollback_lease=arm))
    assert failed.get('failed') and 'nothing was changed' in failed['msg'], failed['msg']
    assert failed['snapshot']['path'] == str(dest) and failed['snapshot']['size'] == dest.stat().st_size, failed
    assert both_states(app, mysql_source) == damaged
    info = run_module('backup_info', dict(archive=str(dest), verify=True))
    assert info['backup']['valid'] and info['backup']['checksum'] == 'ok', info['backup']
    assert info['backup']['created_at'] == '2026-01-01T03:00:00Z' and info['manifest']['label'] == 'pre-restore', info
    assert json.loads(lease_file.read_text())['rollback']['snapshot'] == str(dest)
    assert not run_module('maintenance', dict(state='off', path=str(app.backups), token='r7')).get('failed')

    # The restore itself: its snapshot first (here a second one), then the archive, in one call.
    again = app.backups / 'fixture-20260101T030001Z-pre-restore.tar.zst'
    result = run_module('backup_restore', dict(app=definition, src=created['path'], snapshot=snap(again.name),
                                               rollback_lease=dict(arm, snapshot=str(again))))
    assert not result.get('failed'), result.get('msg')
    assert both_states(app, mysql_source) == before
    assert result['snapshot']['path'] == str(again) and result['lease']['rollback'] == str(again)
    written = [i for i, line in enumerate(result['log']) if line.startswith('safety snapshot %s written' % again.name)]
    verified = [i for i, line in enumerate(result['log']) if line.startswith('verified ')]
    assert len(written) == 1 and len(verified) == 1 and written[0] < verified[0], result['log']
    assert not [name for name in os.listdir(app.backups) if name.startswith('.work-')]
    assert not run_module('maintenance', dict(state='off', path=str(app.backups), token='r7')).get('failed')

    # The lease of the run expired (its timer fired: maintenance is off again): nothing is restored.
    app.damage()
    damaged = both_states(app, mysql_source)
    short = run_module('maintenance', dict(state='on', path=str(app.backups), token='r8', lease=1))
    assert not short.get('failed'), short
    fired = app.backups / '.appvault-maintenance.fired.json'
    assert wait_for(fired.exists, 15), 'the timer did not fire'
    late = app.backups / 'fixture-20260101T030002Z-pre-restore.tar.zst'
    stopped = run_module('backup_restore', dict(app=definition, src=created['path'], snapshot=snap(late.name),
                                                rollback_lease=dict(arm, token='r8')))
    assert stopped.get('failed') and 'expired' in stopped['msg'] and 'nothing was restored' in stopped['msg'], stopped['msg']
    assert both_states(app, mysql_source) == damaged and not lease_file.exists()
