"""Bad input against real servers: a clear error naming the problem, and nothing changed."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from harness.common import free_port, run_module, run_playbook
from harness.compare import pg_inventory


def dump_args(server, dest, **extra):
    args = server.conn_args('appdb', dest=str(dest), inventory=False)
    args.update(extra)
    return args


def failed_dump(args):
    result = run_module('postgresql_dump', args)
    assert result.get('failed'), result
    return result['msg']


def failed_restore(args):
    result = run_module('postgresql_restore', args)
    assert result.get('failed'), result
    return result['msg']


@pytest.fixture(scope='module')
def good_dump(pg_source, tmp_path_factory):
    dest = tmp_path_factory.mktemp('good') / 'appdb.pgc.zst'
    result = run_module('postgresql_dump', dump_args(pg_source, dest))
    assert not result.get('failed'), result.get('msg')
    return dest


def test_wrong_password(pg_source, tmp_out):
    msg = failed_dump(dump_args(pg_source, tmp_out / 'x.pgc', login_password='Wr0ng-Secret-7731'))
    assert 'password authentication failed for user "postgres"' in msg
    assert 'Wr0ng-Secret-7731' not in msg
    assert os.listdir(tmp_out) == []


def test_unknown_database(pg_source, tmp_out):
    args = dump_args(pg_source, tmp_out / 'x.pgc')
    args['name'] = 'no_such_db'
    msg = failed_dump(args)
    assert 'database "no_such_db" does not exist' in msg
    assert os.listdir(tmp_out) == []


def test_server_down(work_base, tmp_out):
    port = free_port()
    args = dict(name='appdb', login_host='127.0.0.1', login_port=port, login_user='postgres', login_password='x',
                dest=str(tmp_out / 'x.pgc'))
    msg = failed_dump(args)
    assert '127.0.0.1:%d' % port in msg and ('Connection refused' in msg or 'could not connect' in msg)
    assert os.listdir(tmp_out) == []


def test_destination_directory_missing(pg_source, tmp_out):
    msg = failed_dump(dump_args(pg_source, tmp_out / 'missing' / 'x.pgc'))
    assert msg == 'destination directory %s does not exist' % (tmp_out / 'missing')


def test_destination_directory_read_only(pg_source, tmp_out, tmp_path):
    ro = tmp_path / 'ro'
    ro.mkdir()
    subprocess.run(['mount', '--bind', '-o', 'ro', str(ro), str(ro)], check=True)
    subprocess.run(['mount', '-o', 'remount,bind,ro', str(ro)], check=True)
    try:
        msg = failed_dump(dump_args(pg_source, ro / 'x.pgc'))
        assert 'is not writable' in msg or 'Read-only file system' in msg
        assert os.listdir(ro) == []
    finally:
        subprocess.run(['umount', str(ro)], check=True)


def test_disk_full_leaves_nothing(pg_source, tmp_path):
    small = tmp_path / 'small'
    small.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', str(small)], check=True)
    try:
        msg = failed_dump(dump_args(pg_source, small / 'x.pgc.zst'))
        assert 'No space left on device' in msg
        assert os.listdir(small) == []
    finally:
        subprocess.run(['umount', str(small)], check=True)


def test_existing_destination_needs_force(pg_source, tmp_out):
    dest = tmp_out / 'x.pgc.zst'
    dest.write_bytes(b'precious')
    msg = failed_dump(dump_args(pg_source, dest))
    assert msg == 'destination %s already exists; set force: true to replace it' % dest
    assert dest.read_bytes() == b'precious'
    result = run_module('postgresql_dump', dump_args(pg_source, dest, force=True))
    assert not result.get('failed'), result.get('msg')
    assert dest.read_bytes()[:4] == b'\x28\xb5\x2f\xfd'


def test_jobs_needs_directory_format(pg_source, tmp_out):
    msg = failed_dump(dump_args(pg_source, tmp_out / 'x.pgc', jobs=2))
    assert 'jobs: 2 needs format: directory' in msg


def _target_unchanged(pg_target, name, before):
    after = pg_inventory(pg_target, name)
    assert after == before


@pytest.fixture
def existing_target(pg_target, good_dump):
    """A target database holding the fixture, restored from the good dump; its inventory before each test."""
    pg_target.drop_db('victim')
    result = run_module('postgresql_restore', pg_target.conn_args('victim', src=str(good_dump), create=True))
    assert not result.get('failed'), result.get('msg')
    return pg_inventory(pg_target, 'victim')


@pytest.mark.parametrize('damage', ['truncated', 'bitflip', 'garbage', 'empty'])
def test_corrupt_dump_refused(pg_target, good_dump, tmp_path, existing_target, damage):
    bad = tmp_path / ('bad-%s.pgc.zst' % damage)
    data = good_dump.read_bytes()
    if damage == 'truncated':
        data = data[: len(data) // 2]
    elif damage == 'bitflip':
        middle = len(data) // 2
        data = data[:middle] + bytes([data[middle] ^ 0x40]) + data[middle + 1:]
    elif damage == 'garbage':
        data = b'this is not a dump at all\n' * 10
    else:
        data = b''
    bad.write_bytes(data)
    msg = failed_restore(pg_target.conn_args('victim', src=str(bad), clean=True))
    assert str(bad) in msg
    assert any(word in msg for word in ('corrupt', 'truncated', 'not a PostgreSQL dump', 'is empty')), msg
    _target_unchanged(pg_target, 'victim', existing_target)
    assert not pg_target.has_db('victim_appvault_new')  # the side database the failed restore went into is gone


def test_corrupt_dump_into_existing_database_without_clean_refused_first(pg_target, good_dump, tmp_path, existing_target):
    """Without a side database the dump is read once before anything runs."""
    bad = tmp_path / 'cut.pgc.zst'
    bad.write_bytes(good_dump.read_bytes()[: good_dump.stat().st_size // 2])
    msg = failed_restore(pg_target.conn_args('victim', src=str(bad), clean=False))
    assert 'corrupt or truncated' in msg, msg
    _target_unchanged(pg_target, 'victim', existing_target)


def test_truncated_uncompressed_custom_dump_refused(pg_source, pg_target, tmp_path, existing_target):
    whole = tmp_path / 'whole.pgc'
    assert not run_module('postgresql_dump', dump_args(pg_source, whole, compression='none')).get('failed')
    bad = tmp_path / 'cut.pgc'
    bad.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    msg = failed_restore(pg_target.conn_args('victim', src=str(bad), clean=True))
    assert 'corrupt or truncated' in msg
    _target_unchanged(pg_target, 'victim', existing_target)


def test_dump_from_newer_server_refused(pg_target, good_dump, tmp_path, existing_target):
    """A custom dump whose header says it came from a newer major version (the version bytes rewritten)."""
    raw = tmp_path / 'raw.pgc'
    subprocess.run(['zstd', '-dq', str(good_dump), '-o', str(raw)], check=True)
    data = raw.read_bytes()
    current = pg_target.psql('SHOW server_version').split()[0]
    newer = str(int(current.split('.')[0]) + 2) + current[len(current.split('.')[0]):]
    assert len(newer) == len(current) and data.count(current.encode()) >= 1
    forged = tmp_path / 'newer.pgc'
    forged.write_bytes(data.replace(current.encode(), newer.encode(), 1))
    msg = failed_restore(pg_target.conn_args('victim', src=str(forged), clean=True))
    assert 'taken from PostgreSQL %s, which is newer than the target server' % newer in msg
    assert 'force: true' in msg
    _target_unchanged(pg_target, 'victim', existing_target)


def test_missing_database_without_create(pg_target, good_dump):
    pg_target.drop_db('absent')
    msg = failed_restore(pg_target.conn_args('absent', src=str(good_dump)))
    assert msg == 'database "absent" does not exist on 127.0.0.1:%d; set create: true to create it' % pg_target.port
    assert not pg_target.has_db('absent')


def test_missing_source(pg_target, tmp_path):
    msg = failed_restore(pg_target.conn_args('victim', src=str(tmp_path / 'nope.pgc')))
    assert msg == 'src %s does not exist' % (tmp_path / 'nope.pgc')


def test_expected_inventory_mismatch_keeps_original(pg_target, good_dump, existing_target):
    """A restore that does not match the recorded inventory is not swapped in."""
    expected = dict(existing_target)
    expected['rows'] = dict(expected['rows'], **{'app.users': 1})
    pg_target.psql("UPDATE app.users SET name = 'kept' WHERE id = 100", db='victim')
    before = pg_inventory(pg_target, 'victim')
    result = run_module('postgresql_restore', pg_target.conn_args('victim', src=str(good_dump), clean=True,
                                                                  expected_inventory=expected))
    assert result.get('failed')
    assert 'rows.app.users: expected 1, found 20000' in result['differences']
    _target_unchanged(pg_target, 'victim', before)
    assert not pg_target.has_db('victim_appvault_new')


def test_failed_restore_into_new_database_drops_it(pg_target, tmp_path):
    """A restore that fails half-way into a database it created leaves no half database behind."""
    sql = tmp_path / 'broken.sql'
    sql.write_text('-- PostgreSQL database dump\nCREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\nSELECT no_such_function();\n'
                   '-- PostgreSQL database dump complete\n')
    pg_target.drop_db('halfway')
    msg = failed_restore(pg_target.conn_args('halfway', src=str(sql), create=True))
    assert 'no_such_function' in msg
    assert not pg_target.has_db('halfway')


def test_client_older_than_server_is_named(pg_source, tmp_out, tmp_path):
    """bin_dir pointing at clients that report an older major version than the server: both versions named."""
    fake = tmp_path / 'oldbin'
    fake.mkdir()
    real = shutil.which('pg_dump') or '/usr/bin/pg_dump'
    for tool in ('pg_dump', 'psql'):
        script = fake / tool
        script.write_text('#!/bin/sh\nif [ "$1" = --version ]; then echo "%s (PostgreSQL) 9.6.24"; exit 0; fi\nexec %s "$@"\n'
                          % (tool, real if tool == 'pg_dump' else real.replace('pg_dump', 'psql')))
        script.chmod(0o755)
    msg = failed_dump(dump_args(pg_source, tmp_out / 'x.pgc', bin_dir=str(fake)))
    server_major = pg_source.psql('SHOW server_version').split('.')[0]
    assert 'is PostgreSQL %s, but the newest pg_dump found is version 9.6' % server_major in msg
    assert os.listdir(tmp_out) == []


def test_failing_compressor_fails_the_dump(pg_source, tmp_out, tmp_path):
    """pg_dump succeeds but the zstd stage dies: the module fails, names zstd, and leaves no file."""
    fakebin = tmp_path / 'fakebin'
    fakebin.mkdir()
    (fakebin / 'zstd').write_text('#!/bin/sh\nhead -c 1000 >/dev/null\necho "zstd: simulated write error" >&2\nexit 1\n')
    (fakebin / 'zstd').chmod(0o755)
    run = run_playbook([{
        'name': 'dump with a broken compressor', 'ignore_errors': True,
        'environment': {'PATH': '%s:%s' % (fakebin, os.environ['PATH'])},
        'appvault.backup.postgresql_dump': dump_args(pg_source, tmp_out / 'x.pgc.zst', compression='zstd'),
    }])
    result = run.last
    assert result.get('failed'), result
    assert 'zstd failed with exit status 1: zstd: simulated write error' in result['msg']
    assert os.listdir(tmp_out) == []
