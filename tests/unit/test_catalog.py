"""Safe names, archive names, retention math and the lock of _catalog."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.appvault.backup.plugins.module_utils import _catalog, _common
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError

UTC = datetime.timezone.utc


@pytest.mark.parametrize('name', ['exment-20250101T030000Z.tar.zst', 'before_upgrade', 'a', 'A.b-c_d', '2025'])
def test_safe_names_accepted(name):
    assert _catalog.check_name(name) == name


@pytest.mark.parametrize('name, why', [
    ('ﾊﾞｯｸｱｯﾌﾟ', 'not allowed'),        # half-width kana (Exment refuses them too)
    ('バックアップ', 'not allowed'),       # full-width
    ('\uff42\uff41\uff43\uff4b', 'not allowed'),  # full-width latin "back"
    ('back up', 'not allowed'),
    ('a$b', 'not allowed'),
    ('a;rm', 'not allowed'),
    ('x/y', 'separator'),
    ('../x', 'separator'),
    ('a\\b', 'separator'),
    ('.hidden', 'must not start'),
    ('-rf', 'must not start'),
    ('..', 'must not start'),
    ('', 'empty'),
    ('a' * 201, 'longer'),
])
def test_unsafe_names_refused(name, why):
    with pytest.raises(AppvaultError) as exc:
        _catalog.check_name(name)
    assert why in exc.value.msg


def test_archive_name_and_suffix():
    when = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert _catalog.archive_name('exment', when) == 'exment-20250102T030405Z.tar.zst'
    assert _catalog.archive_name('exment', when, 'pre', 'gzip', True) == 'exment-20250102T030405Z-pre.tar.gz.age'
    assert _catalog.split_suffix('a.tar.zst.age') == ('a', '.tar.zst.age')
    assert _catalog.split_suffix('a.b.tar.gz') == ('a.b', '.tar.gz')
    with pytest.raises(AppvaultError):
        _catalog.archive_name('exment', when, 'ラベル')
    assert _catalog.new_name_for('/b/x-1.tar.zst', 'keep-me') == 'keep-me.tar.zst'
    assert _catalog.new_name_for('/b/x-1.tar.zst', 'keep-me.tar.zst') == 'keep-me.tar.zst'


def _items(times, pinned=()):
    return [dict(name='b%03d' % i, created_at=t, pinned=i in pinned) for i, t in enumerate(times)]


def test_retention_daily_keeps_newest_of_each_day():
    base = datetime.datetime(2025, 3, 10, 23, 0, tzinfo=UTC)
    times = [base - datetime.timedelta(hours=6 * i) for i in range(12)]  # 4 per day over 3 days
    kept = _catalog.retention(_items(times), keep_daily=2)
    assert sorted(kept) == ['b000', 'b004']  # newest of 10 March and of 9 March (days in UTC)
    assert kept['b000'] == ['daily']


def test_retention_pinned_do_not_count_and_newest_always_kept():
    base = datetime.datetime(2025, 3, 10, tzinfo=UTC)
    times = [base - datetime.timedelta(days=i) for i in range(5)]
    kept = _catalog.retention(_items(times, pinned={0, 3}), keep_last=1)
    assert kept == {'b000': ['pinned'], 'b003': ['pinned'], 'b001': ['last']}
    kept = _catalog.retention(_items(times), keep_last=0)
    assert kept == {'b000': ['newest']}


def test_retention_weekly_monthly_yearly():
    times = [datetime.datetime(2023, 12, 31, tzinfo=UTC), datetime.datetime(2024, 1, 1, tzinfo=UTC),
             datetime.datetime(2024, 1, 15, tzinfo=UTC), datetime.datetime(2024, 2, 1, tzinfo=UTC)]
    items = _items(times)
    assert set(_catalog.retention(items, keep_yearly=5)) == {'b000', 'b003'}
    assert set(_catalog.retention(items, keep_monthly=2)) == {'b002', 'b003'}
    # 2023-12-31 is a Sunday (ISO week 2023-W52), 2024-01-01 a Monday (2024-W01)
    assert set(_catalog.retention(items, keep_weekly=4)) == {'b000', 'b001', 'b002', 'b003'}


times_strategy = st.lists(st.datetimes(min_value=datetime.datetime(2020, 1, 1), max_value=datetime.datetime(2026, 1, 1)),
                          min_size=0, max_size=40, unique=True)
count = st.one_of(st.none(), st.integers(min_value=0, max_value=6))


@settings(max_examples=300, deadline=None)
@given(times_strategy, st.sets(st.integers(min_value=0, max_value=39)), count, count, count, count, count)
def test_retention_properties(times, pinned, last, daily, weekly, monthly, yearly):
    times = [t.replace(tzinfo=UTC) for t in times]
    items = _items(times, pinned)
    rules = dict(keep_last=last, keep_daily=daily, keep_weekly=weekly, keep_monthly=monthly, keep_yearly=yearly)
    kept = _catalog.retention(items, **rules)
    names = {i['name'] for i in items}
    assert set(kept) <= names
    assert {i['name'] for i in items if i['pinned']} <= set(kept)            # pinned never removed
    if items:                                                                   # the newest is never removed
        newest = max(items, key=lambda i: (i['created_at'], i['name']))
        assert newest['name'] in kept
    rotating = sorted((i for i in items if not i['pinned']), key=lambda i: (i['created_at'], i['name']), reverse=True)
    assert {i['name'] for i in rotating[:last or 0]} <= set(kept)               # keep_last N keeps the N newest
    if daily:
        days = []
        for i in rotating:
            if i['created_at'].date() not in days:
                days.append(i['created_at'].date())
        assert len({i['created_at'].date() for i in rotating if 'daily' in kept.get(i['name'], [])}) == min(daily, len(days))
    # Idempotent: pruning what was kept removes nothing more.
    again = _catalog.retention([i for i in items if i['name'] in kept], **rules)
    assert set(again) == set(kept)


def test_lock_recovers_stale_and_refuses_live(tmp_path):
    dead = subprocess.Popen(['true'])
    dead.wait()
    (tmp_path / _catalog.LOCK_NAME).write_text('%d %s\n' % (dead.pid, os.uname().nodename))
    with _catalog.Lock(str(tmp_path)) as lock:
        assert lock.recovered.startswith(str(dead.pid))
        assert (tmp_path / _catalog.LOCK_NAME).read_text().split()[0] == str(os.getpid())
        with pytest.raises(AppvaultError) as exc, _catalog.Lock(str(tmp_path), timeout=0):
            pass
        assert 'locked by process %d' % os.getpid() in exc.value.msg
    assert not (tmp_path / _catalog.LOCK_NAME).exists()


def test_taking_over_a_dead_runs_lock_removes_its_work_directories(tmp_path):
    (tmp_path / '.appvault-run.lock').write_text(json.dumps(dict(token='dead1', operation='backup', host='', pid=0, acquired=1, expires=2)))
    (tmp_path / '.work-dead1').mkdir()
    (tmp_path / '.work-dead1' / 'main.pgdump').write_text('x')
    (tmp_path / '.restore-dead1').mkdir()
    (tmp_path / '.work-alive2').mkdir()
    result = _catalog.RunLock(str(tmp_path), 'new3').acquire('backup', lease=60)
    assert 'work directories were removed' in result['recovered']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['.appvault-run.lock', '.work-alive2']


def test_a_token_that_is_not_a_plain_name_removes_nothing(tmp_path):
    (tmp_path / '.work-..').mkdir(exist_ok=True)
    assert _catalog.RunLock(str(tmp_path), 'x').remove_work('../etc') is False
    assert _catalog.RunLock(str(tmp_path), 'x').remove_work('..') is False


def test_time_from_the_archive_name():
    assert _catalog.name_time('exment-20250101T030000Z-before.tar.zst') == datetime.datetime(2025, 1, 1, 3, 0, tzinfo=datetime.timezone.utc)
    assert _catalog.name_time('renamed.tar.zst') is None


def test_take_run_lock_makes_its_directory_first_and_refuses_a_negative_lease(tmp_path):
    backups = tmp_path / 'srv' / 'backups'
    with pytest.raises(AppvaultError, match=r'lease must be 0 \(no expiry\) or more seconds, got -1'):
        _catalog.take_run_lock(str(backups), 'run1', 'backup', lease=-1, create=True)
    with pytest.raises(AppvaultError, match='is not a directory'):
        _catalog.take_run_lock(str(backups), 'run1', 'backup')
    would = _catalog.take_run_lock(str(backups), 'run1', 'backup', lease=60, create=True, check_mode=True)
    assert would['changed'] and would['directory_changed'] and not (tmp_path / 'srv').exists()
    taken = _catalog.take_run_lock(str(backups), 'run1', 'backup', lease=60, create=True)
    assert taken['changed'] and taken['directory_changed'] and oct(backups.stat().st_mode & 0o777) == '0o700'
    held = json.loads((backups / _catalog.RUN_LOCK_NAME).read_text())
    assert held['token'] == 'run1' and held['expires'] - held['acquired'] == 60
    with pytest.raises(AppvaultError, match='is locked: backup on'):
        _catalog.take_run_lock(str(backups), 'run2', 'restore', create=True)
    renewed = _catalog.take_run_lock(str(backups), 'run1', 'backup', lease=0, create=True)
    assert not renewed['changed'] and not renewed['directory_changed'] and renewed['lock']['expires'] is None


def test_describe_trusts_a_check_made_moments_before_only_while_the_file_is_unchanged(tmp_path):
    """verified (the receiving host's check on arrival, say) replaces the whole file's sha256 while the checksum file
    holds that sha256 and the file's identity is the one checked; otherwise the file is hashed again."""
    path = tmp_path / 'app-20250101T000000Z.tar.zst'
    path.write_bytes(b'archive bytes' * 1000)
    real = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar = tmp_path / (path.name + '.sha256')
    sidecar.write_text('%s  %s\n' % (real, path.name))
    hashed = _catalog.describe(str(path), verify=True)[0]
    assert hashed['checksum'] == 'ok' and 'trusted' not in hashed
    identity = hashed['verified_identity']
    assert identity == _common.file_identity(os.stat(str(path)))
    trusted = _catalog.describe(str(path), verify=True, verified=dict(sha256=real, identity=identity))[0]
    assert trusted['checksum'] == 'ok' and trusted['trusted'] is True and trusted['verified_identity'] == identity
    # Trust means not hashing: a checksum file and a check that agree on a wrong sha256 pass unread ...
    wrong = '0' * 64
    sidecar.write_text('%s  %s\n' % (wrong, path.name))
    assert _catalog.describe(str(path), verify=True, verified=dict(sha256=wrong, identity=identity))[0]['checksum'] == 'ok'
    # ... but not once the check's sha256 is not the checksum file's, or the file changed since (its ctime moved).
    assert _catalog.describe(str(path), verify=True, verified=dict(sha256=real, identity=identity))[0]['checksum'] == 'mismatch'
    sidecar.write_text('%s  %s\n' % (real, path.name))
    os.utime(str(path), ns=(0, 0))
    stale = _catalog.describe(str(path), verify=True, verified=dict(sha256=real, identity=identity))[0]
    assert stale['checksum'] == 'ok' and 'trusted' not in stale and stale['verified_identity'] != identity
    assert _catalog.describe(str(path), verify=False, verified=dict(sha256=real, identity=stale['verified_identity']))[0]['checksum'] == 'present'


def test_the_retention_after_a_backup_takes_the_manifest_it_was_written_with(tmp_path, monkeypatch):
    """written (the result of the archive just written) stands for the manifest inside that archive while its checksum
    file holds the sha256 it was written with; every other archive, and that one once its checksum file says otherwise,
    is read as before."""
    from ansible_collections.appvault.backup.plugins.module_utils import _archive, _manifest
    tree = tmp_path / 'storage'
    tree.mkdir()
    (tree / 'a.txt').write_text('a')
    backups = tmp_path / 'backups'
    first = _archive.create(str(backups), {'name': 'app'}, [], [{'id': 'storage', 'path': str(tree)}],
                            now=datetime.datetime(2025, 1, 1, tzinfo=UTC))
    second = _archive.create(str(backups), {'name': 'app'}, [], [{'id': 'storage', 'path': str(tree)}],
                             now=datetime.datetime(2025, 1, 2, tzinfo=UTC))
    reads = []
    real_read = _manifest.read_from_archive

    def counting_read(path, *args, **kwargs):
        reads.append(os.path.basename(path))
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(_manifest, 'read_from_archive', counting_read)
    pruned = _catalog.prune(str(backups), keep_last=1, check_mode=True, written=second)
    assert reads == [first['name']]
    assert pruned['removed'] == [first['name']] and [k['name'] for k in pruned['kept']] == [second['name']]
    assert [k['created_at'] for k in pruned['kept']] == ['2025-01-02T00:00:00Z']
    # without it, or once the checksum file no longer holds the sha256 written, the archive's own manifest is read
    del reads[:]
    assert _catalog.prune(str(backups), keep_last=1, check_mode=True)['removed'] == [first['name']]
    assert sorted(reads) == sorted([first['name'], second['name']])
    del reads[:]
    entry = _catalog.describe(second['path'], written=dict(second, sha256='0' * 64))[0]
    assert reads == [second['name']] and entry['valid'] and entry['created_at'] == '2025-01-02T00:00:00Z'
    del reads[:]
    assert _catalog.describe(first['path'], written=second)[0]['created_at'] == '2025-01-01T00:00:00Z'
    assert reads == [first['name']]
