"""The installed schedule: its files, the timer validated by systemd-analyze (on the controller: the test host does
not run systemd), and the job run exactly as the timer runs it (the unit's ExecStart, as root, with systemd's
environment) several times: backups, retention, maintenance, hooks, journal and syslog lines, the run lock and the
check subcommand. The tests run in file order and build on each other."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import time

import pytest

BACKUP_DIR = '/var/backups/appvault'
UNIT = '/etc/systemd/system/appvault-backup-fixture'
CONFIG = '/etc/appvault/fixture.json'
LIB = '/usr/local/lib/appvault'
HOOKS_LOG = '/var/lib/appvault-molecule/hooks.log'
SYSLOG_FILE = '/var/tmp/devlog.txt'
# What systemd (252) gives a system service without User=: PATH, and JOURNAL_STREAM when stderr is the journal.
SYSTEMD_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
# Binds /dev/log like a syslog daemon and appends every datagram received to a file.
DEVLOG_LISTENER = ("import socket, sys\n"
                   "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
                   "s.bind('/dev/log')\n"
                   "out = open(sys.argv[1], 'ab', 0)\n"
                   "while True:\n"
                   "    out.write(s.recv(65536) + b'\\n')\n")


def unit_value(host, suffix, key):
    values = [line.split('=', 1)[1] for line in host.file(UNIT + suffix).content_string.splitlines() if line.startswith(key + '=')]
    assert values, 'no %s= in %s%s' % (key, UNIT, suffix)
    return values


def run_as_timer(host, journal=False):
    """The service's ExecStart, as root, in the environment systemd gives it."""
    command = unit_value(host, '.service', 'ExecStart')[0]
    env = SYSTEMD_ENV + (' JOURNAL_STREAM=8:12345' if journal else '')
    return host.run('cd / && env -i %s %s' % (env, command))


def archives(host):
    names = host.check_output('ls -1 %s' % BACKUP_DIR).split()
    return sorted(name for name in names if name.endswith('.tar.zst'))


def write_lock(host, pid, token):
    now = int(time.time())
    lock = dict(token=token, operation='manual backup', host=host.check_output('hostname'), pid=pid, acquired=now, expires=now + 3600)
    host.check_output('printf %%s %s > %s/.appvault-run.lock' % (shlex.quote(json.dumps(lock)), BACKUP_DIR))


@pytest.fixture(scope='module')
def runs():
    """Archives made by the runs of this module, in order."""
    return []


def test_files_installed_with_their_modes(host):
    config = host.file(CONFIG)
    assert config.exists and config.user == 'root' and config.mode == 0o600
    assert host.file('/etc/appvault').mode == 0o700
    assert json.loads(host.check_output('cat %s' % CONFIG))['app']['name'] == 'fixture'
    for suffix in ('.service', '.timer'):
        assert host.file(UNIT + suffix).mode == 0o644
    link = host.file('/etc/systemd/system/timers.target.wants/appvault-backup-fixture.timer')
    assert link.is_symlink and link.linked_to == UNIT + '.timer'
    assert not host.file('/etc/cron.d/appvault-backup-fixture').exists
    assert host.file(LIB + '/appvault-run').exists
    assert host.file(LIB + '/ansible_collections/appvault/backup/plugins/module_utils/_hostrun.py').exists
    # The job needs no Ansible on the host.
    assert host.run('python3 -c "import ansible"').rc != 0


def test_timer_calendar_and_options(host):
    assert unit_value(host, '.timer', 'OnCalendar') == ['*-*-01/2 03:00:00']
    assert unit_value(host, '.timer', 'Persistent') == ['true']
    assert unit_value(host, '.timer', 'RandomizedDelaySec') == ['600']
    assert unit_value(host, '.service', 'Type') == ['oneshot']


def test_systemd_analyze_accepts_the_calendar_and_the_units(host, tmp_path):
    analyze = shutil.which('systemd-analyze')
    assert analyze, 'systemd-analyze is not installed on the controller (package systemd)'
    calendar = unit_value(host, '.timer', 'OnCalendar')[0]
    out = subprocess.run([analyze, 'calendar', '--iterations=3', calendar], check=False, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert 'Normalized form: *-*-01/2 03:00:00' in out.stdout
    days = [int(day) for day in re.findall(r'\d{4}-\d\d-(\d\d) 03:00:00', out.stdout)]
    assert days and all(day % 2 == 1 for day in days), out.stdout
    for suffix in ('.service', '.timer'):
        (tmp_path / ('appvault-backup-fixture' + suffix)).write_text(host.file(UNIT + suffix).content_string)
    out = subprocess.run([analyze, 'verify', str(tmp_path / 'appvault-backup-fixture.timer'), str(tmp_path / 'appvault-backup-fixture.service')],
                         check=False, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert 'appvault-backup-fixture' not in out.stderr, out.stderr


def test_first_run_as_the_timer_logs_to_the_journal(host, runs):
    host.check_output('fixture-app mark scheduled')
    result = run_as_timer(host, journal=True)
    assert result.rc == 0, result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith('<6>scheduled backup of fixture into %s started' % BACKUP_DIR) for line in lines), lines
    assert any(re.match(r'<6>archive fixture-\d{8}T\d{6}Z\.tar\.zst written', line) for line in lines), lines
    runs.append(archives(host)[-1])
    assert len(archives(host)) == 1


def test_maintenance_ran_as_the_app_owner_around_the_dump(events_after, app_root):
    events = events_after('scheduled')
    assert [event.name for event in events] == ['maintenance-on', 'maintenance-off'], events
    assert all(event.user == 'app' and event.fields['cwd'] == app_root for event in events), events


def test_next_runs_log_to_syslog_and_apply_retention(host, runs):
    host.run('rm -f /dev/log %s' % SYSLOG_FILE)
    listener = host.check_output('nohup python3 -c %s %s </dev/null >/dev/null 2>&1 & echo $!' % (shlex.quote(DEVLOG_LISTENER), SYSLOG_FILE))
    try:
        for _attempt in range(50):
            if host.run('test -S /dev/log').rc == 0:
                break
            time.sleep(0.1)
        for _run in range(2):
            time.sleep(1.1)  # archive names carry the second
            result = run_as_timer(host)
            assert result.rc == 0, result.stderr
            assert result.stderr == '', 'with syslog there, only warnings and errors go to stderr: %s' % result.stderr
            runs.append(archives(host)[-1])
    finally:
        host.run('kill %s; rm -f /dev/log' % listener)
    logged = host.file(SYSLOG_FILE).content_string
    assert re.search(r'appvault-fixture\[\d+\]: scheduled backup of fixture into %s started' % BACKUP_DIR, logged), logged
    assert 'removed 1: %s' % runs[0] in logged, logged
    assert archives(host) == runs[1:], 'keep 2: %s' % archives(host)


def test_backups_are_valid_and_complete(host, runs):
    for name in runs[1:]:
        path = '%s/%s' % (BACKUP_DIR, name)
        assert host.file(path).mode == 0o600
        host.check_output('cd %s && sha256sum -c %s.sha256' % (BACKUP_DIR, name))
        manifest = json.loads(host.check_output('tar --zstd -xOf %s manifest.json' % path))
        assert [db['id'] for db in manifest['databases']] == ['main']
        assert manifest['databases'][0]['engine'] == 'postgresql'
        assert manifest['databases'][0]['inventory']['rows'], 'no row counts recorded'
        assert sorted(item['id'] for item in manifest['paths']) == ['config', 'storage']
        assert manifest['app']['version'] == '1.0.0'
    assert not host.file('%s/.appvault-run.lock' % BACKUP_DIR).exists
    assert host.check_output('ls -A %s | grep -c "^.work-" || true' % BACKUP_DIR) == '0'


def test_success_hook_was_told(host, runs):
    lines = host.file(HOOKS_LOG).content_string.splitlines()
    assert ['success app=fixture backup=%s user=root' % name for name in runs] == [line.split(' message=')[0] for line in lines]


def test_a_held_lock_fails_the_job_cleanly(host, runs):
    write_lock(host, 1, 'manual-run')  # pid 1 (sshd) is alive: a fresh lock
    try:
        result = run_as_timer(host)
        assert result.rc == 75, result.stderr
        assert 'is locked: manual backup on' in result.stderr, result.stderr
        assert archives(host) == runs[1:]
        assert json.loads(host.file('%s/.appvault-run.lock' % BACKUP_DIR).content_string)['token'] == 'manual-run'  # noqa: S105 - a lock token
        last = host.file(HOOKS_LOG).content_string.splitlines()[-1]
        assert last.startswith('failure app=fixture backup= user=root message=') and 'is locked' in last, last
    finally:
        host.run('rm -f %s/.appvault-run.lock' % BACKUP_DIR)


def test_a_stale_lock_of_a_dead_process_is_recovered(host, runs):
    dead = int(host.check_output('sh -c "echo \\$\\$"'))
    assert host.run('kill -0 %d' % dead).rc != 0
    write_lock(host, dead, 'crashed-run')
    time.sleep(1.1)
    result = run_as_timer(host)
    assert result.rc == 0, result.stderr
    assert 'took over a stale lock' in result.stderr and 'process %d is gone' % dead in result.stderr, result.stderr
    runs.append(archives(host)[-1])
    assert archives(host) == runs[2:]
    assert not host.file('%s/.appvault-run.lock' % BACKUP_DIR).exists


def test_check_passes_with_the_configured_limits(host, runs):
    command = '%s check' % unit_value(host, '.service', 'ExecStart')[0].rsplit(' run', 1)[0]
    result = host.run(command)
    assert result.rc == 0, result.stdout + result.stderr
    assert result.stdout.startswith('OK: newest valid backup %s' % runs[-1]), result.stdout


@pytest.mark.parametrize('options, problem', [('--min-size 1T', 'smaller than 1.0 TiB'), ('--max-age 0', 'older than 0s')])
def test_check_fails_when_too_small_or_too_old(host, options, problem):
    command = '%s check %s' % (unit_value(host, '.service', 'ExecStart')[0].rsplit(' run', 1)[0], options)
    time.sleep(1.1)
    result = host.run(command)
    assert result.rc == 2, result.stdout + result.stderr
    assert result.stdout.startswith('CRITICAL: newest valid backup') and problem in result.stdout, result.stdout


def test_check_fails_without_a_valid_backup(host):
    host.check_output('install -d -m 0700 /var/tmp/empty-backups')
    edited = json.loads(host.check_output('cat %s' % CONFIG))
    edited['backup_dir'] = '/var/tmp/empty-backups'
    host.check_output('umask 077 && printf %%s %s > /var/tmp/empty.json' % shlex.quote(json.dumps(edited)))
    result = host.run('python3 -I %s/appvault-run --config /var/tmp/empty.json check' % LIB)
    host.run('rm -f /var/tmp/empty.json')
    assert result.rc == 2 and result.stdout.startswith('CRITICAL: no valid backup'), result.stdout + result.stderr


def test_a_config_readable_by_others_is_refused(host):
    host.check_output('chmod 0644 %s' % CONFIG)
    try:
        result = run_as_timer(host)
    finally:
        host.check_output('chmod 0600 %s' % CONFIG)
    assert result.rc == 64, result.stderr
    assert 'must not be readable by group or others' in result.stderr
