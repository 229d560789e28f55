"""The calendar spec turned into systemd OnCalendar and cron expressions, durations and sizes (_schedule), and the
runner's configuration reader and check subcommand (_hostrun) - pure logic and local files; the runner's real
runs are tested by the molecule scenario extensions/molecule/schedule, its webhook against a local HTTP server."""

from __future__ import annotations

import http.server
import io
import json
import os
import subprocess
import sys
import threading

import pytest

from ansible_collections.appvault.backup.plugins.module_utils import _hostrun, _schedule
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError


@pytest.mark.parametrize('spec, on_calendar, cron', [
    ({'time': '03:00', 'every_days': 2}, ['*-*-01/2 03:00:00'], ['0 3 */2 * *']),
    ({'time': '03:00'}, ['*-*-* 03:00:00'], ['0 3 * * *']),
    ({'time': '3:05', 'every_days': 1}, ['*-*-* 03:05:00'], ['5 3 * * *']),
    ({'time': ['23:30', '03:00'], 'every_days': 7}, ['*-*-01/7 03:00:00', '*-*-01/7 23:30:00'], ['0 3 */7 * *', '30 23 */7 * *']),
    ({'time': '01:15', 'weekdays': ['mon', 'Thursday']}, ['Mon,Thu *-*-* 01:15:00'], ['15 1 * * 1,4']),
    ({'time': '00:00', 'weekdays': 'sun,sat'}, ['Sat,Sun *-*-* 00:00:00'], ['0 0 * * 6,7']),
])
def test_friendly_spec_gives_both_expressions(spec, on_calendar, cron):
    assert _schedule.calendar(spec) == {'on_calendar': on_calendar, 'cron': cron}


@pytest.mark.parametrize('text, on_calendar, cron', [
    ('Mon..Fri *-*-* 02:30:00', ['Mon..Fri *-*-* 02:30:00'], None),
    ('daily', ['daily'], None),
    ('*-*-* 03:00:00 Asia/Tokyo', ['*-*-* 03:00:00 Asia/Tokyo'], None),
    ('0 3 */2 * *', None, ['0 3 */2 * *']),
    ('30  2 * *  mon-fri', None, ['30 2 * * mon-fri']),
    ('@daily', None, ['@daily']),
])
def test_raw_expressions_are_kept_for_their_scheduler(text, on_calendar, cron):
    assert _schedule.calendar(text) == {'on_calendar': on_calendar, 'cron': cron}


@pytest.mark.parametrize('spec, message', [
    ({'time': '25:00'}, "'25:00' is not a time of day"),
    ({'time': '03:60'}, 'not a time of day'),
    ({'time': 300}, 'not a time of day'),
    ({'time': []}, 'at least one time'),
    ({'every_days': 2}, 'time is required'),
    ({'time': '03:00', 'every_days': 0}, 'every_days must be a whole number from 1 to 31'),
    ({'time': '03:00', 'every_days': 32}, 'from 1 to 31'),
    ({'time': '03:00', 'every_days': '2'}, 'from 1 to 31'),
    ({'time': '03:00', 'every_days': True}, 'from 1 to 31'),
    ({'time': '03:00', 'weekdays': ['mo']}, "'mo' is not a weekday"),
    ({'time': '03:00', 'weekdays': []}, 'at least one day'),
    ({'time': '03:00', 'every_days': 2, 'weekdays': ['mon']}, 'not both'),
    ({'time': '03:00', 'hour': 3}, 'unknown key hour'),
    ('', 'must not be empty'),
    ('daily\nExecStart=/bin/sh', 'span lines'),
    ('@reboot', 'not a calendar'),
    ('03:00; rm -rf /', 'neither a cron expression'),
    (7, 'must be a mapping'),
])
def test_bad_specs_are_refused_naming_the_problem(spec, message):
    with pytest.raises(AppvaultError, match='appvault_schedule_calendar') as info:
        _schedule.calendar(spec)
    assert message in info.value.msg


@pytest.mark.parametrize('spec', [{'time': '03:00', 'every_days': 2}, {'time': ['23:30', '03:00'], 'weekdays': ['mon', 'thu']}])
def test_systemd_accepts_the_generated_expressions(spec):
    for expression in _schedule.calendar(spec)['on_calendar']:
        out = subprocess.run(['systemd-analyze', 'calendar', expression], check=False, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert 'Normalized form: %s' % expression in out.stdout


@pytest.mark.parametrize('value, seconds', [(90, 90), ('90', 90), ('45s', 45), ('30m', 1800), ('26h', 93600), ('2d', 172800),
                                            ('1w', 604800), ('1d12h', 129600), (' 2D ', 172800), ('0', 0)])
def test_durations(value, seconds):
    assert _schedule.parse_duration(value) == seconds


@pytest.mark.parametrize('value', ['', 'h', '2x', '2d 3', '-1h', True, -5, '1.5h'])
def test_bad_durations(value):
    with pytest.raises(AppvaultError, match='max_age'):
        _schedule.parse_duration(value, 'max_age')


@pytest.mark.parametrize('value, size', [(512, 512), ('512', 512), ('10k', 10240), ('10KiB', 10240), ('10M', 10485760), ('1.5G', 1610612736),
                                         ('2 MB', 2097152), ('1t', 1024 ** 4)])
def test_sizes(value, size):
    assert _schedule.parse_size(value) == size


@pytest.mark.parametrize('value', ['', 'M', '10X', '-1', False, -1, '1e3'])
def test_bad_sizes(value):
    with pytest.raises(AppvaultError, match='min_size'):
        _schedule.parse_size(value, 'min_size')


# -- the runner's configuration --------------------------------------------------------------
APP = {'name': 'demo', 'root': '/srv/demo', 'databases': [{'id': 'main', 'engine': 'sqlite', 'path': 'db.sqlite'}]}


def write_config(tmp_path, data, mode=0o600):
    path = tmp_path / 'demo.json'
    path.write_text(json.dumps(data))
    os.chmod(path, mode)
    return str(path)


def test_config_defaults_and_resolved_app(tmp_path):
    config = _hostrun.load_config(write_config(tmp_path, {'version': 1, 'app': APP, 'check': {'max_age': '26h', 'min_size': '1M'},
                                                          'on_failure': {'command': 'logger -t backup failed'}}))
    assert config['keep'] == 7 and config['backup_dir'] == '/var/backups/appvault' and config['compression'] == 'zstd'
    assert config['app']['databases'][0]['path'] == '/srv/demo/db.sqlite'
    assert config['check'] == {'max_age': 93600, 'min_size': 1048576}
    assert config['on_failure'] == {'webhook': None, 'command': [['logger', '-t', 'backup', 'failed']]}
    assert config['on_success'] == {'webhook': None, 'command': []}


@pytest.mark.parametrize('data, message', [
    ({'version': 1}, 'app (the environment definition) is missing'),
    ({'version': 2, 'app': APP}, 'has version 2'),
    ({'version': 1, 'app': APP, 'keep': -1}, 'keep must be a whole number'),
    ({'version': 1, 'app': APP, 'backup_dir': 'relative'}, 'backup_dir must be an absolute path'),
    ({'version': 1, 'app': APP, 'retention': 3}, 'unknown key retention'),
    ({'version': 1, 'app': APP, 'on_success': {'webhook': 'file:///etc/passwd'}}, 'http:// or https://'),
    ({'version': 1, 'app': APP, 'on_success': {'email': 'x'}}, 'may only hold webhook and command'),
    ({'version': 1, 'app': APP, 'on_failure': {'command': 'a && b'}}, 'needs a shell'),
    ({'version': 1, 'app': APP, 'destinations': [{'name': 'far', 'kind': 's3'}]}, 'destination far (s3) needs bucket'),
    ({'version': 1, 'app': APP, 'destinations': [{'name': 'far', 'kind': 's3', 'bucket': 'b', 'colour': 1}]}, 'unknown key colour'),
    ({'version': 1, 'app': APP, 'destinations': [{'name': 'peer', 'kind': 'host', 'host': 'b'}]}, 'only a run from the controller'),
    ({'version': 1, 'app': dict(APP, engine='x')}, 'unknown key engine'),
    ({'version': 1, 'app': APP, 'check': {'max_age': 'soon'}}, 'check.max_age'),
])
def test_bad_configs_are_refused(tmp_path, data, message):
    with pytest.raises(AppvaultError) as info:
        _hostrun.load_config(write_config(tmp_path, data))
    assert message in info.value.msg


def test_config_readable_by_others_is_refused(tmp_path):
    with pytest.raises(AppvaultError, match='must not be readable by group or others'):
        _hostrun.load_config(write_config(tmp_path, {'version': 1, 'app': APP}, mode=0o640))


def test_check_without_backups_is_critical(tmp_path):
    config = _hostrun.check_config({'version': 1, 'app': APP, 'backup_dir': str(tmp_path)})
    code, line = _hostrun.check(config)
    assert code == _hostrun.CHECK_CRITICAL and line.startswith('CRITICAL: no valid backup in %s' % tmp_path)


def test_check_of_a_missing_directory_is_unknown(tmp_path, capsys):
    path = write_config(tmp_path, {'version': 1, 'app': APP, 'backup_dir': str(tmp_path / 'missing')})
    assert _hostrun.main(['--config', path, 'check']) == _hostrun.CHECK_UNKNOWN
    assert capsys.readouterr().out.startswith('UNKNOWN: backup directory')


def test_journal_lines_carry_priorities(monkeypatch):
    monkeypatch.setenv('JOURNAL_STREAM', '8:1')
    out = io.StringIO()
    log = _hostrun.Log('appvault-demo', stream=out)
    log.info('started\nsecond line')
    log.error('broken')
    assert out.getvalue() == '<6>started\n<6>second line\n<3>error: broken\n'


def test_without_journal_or_syslog_everything_goes_to_stderr(monkeypatch, tmp_path):
    monkeypatch.delenv('JOURNAL_STREAM', raising=False)
    out = io.StringIO()
    log = _hostrun.Log('appvault-demo', stream=out, devlog=str(tmp_path / 'no-socket'))
    log.info('started')
    assert out.getvalue() == 'appvault-demo[%d]: started\n' % os.getpid()


def test_webhook_gets_the_event_as_json():
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.headers['Content-Type'], json.loads(self.rfile.read(int(self.headers['Content-Length'])))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    out = io.StringIO()
    try:
        hook = {'webhook': 'http://127.0.0.1:%d/ping' % server.server_address[1], 'command': []}
        event = {'app': 'demo', 'status': 'failure', 'message': 'disk full'}
        _hostrun.notify(hook, event, _hostrun.Log('appvault-demo', stream=out, devlog='/nonexistent'), timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    assert received == [('application/json', event)]
    assert 'webhook notified (failure): HTTP 204' in out.getvalue()


def test_a_failing_webhook_is_logged_not_raised():
    out = io.StringIO()
    hook = {'webhook': 'http://127.0.0.1:9/', 'command': []}
    _hostrun.notify(hook, {'status': 'success'}, _hostrun.Log('appvault-demo', stream=out, devlog='/nonexistent'), timeout=2)
    assert 'error: webhook for success failed' in out.getvalue()


def test_module_utils_run_without_ansible(tmp_path):
    """The tree the schedule role copies to hosts imports with plain python3 and Ansible made unimportable."""
    source = os.path.join(os.path.dirname(_hostrun.__file__))
    package = tmp_path / 'ansible_collections' / 'appvault' / 'backup' / 'plugins' / 'module_utils'
    package.mkdir(parents=True)
    for name in os.listdir(source):
        if name.endswith('.py'):
            (package / name).write_bytes(open(os.path.join(source, name), 'rb').read())
    for parent in [package] + list(package.parents)[:4]:
        (parent / '__init__.py').touch()
    code = ("import sys; sys.modules['ansible'] = None; sys.path.insert(0, sys.argv[1]); import glob, importlib, os\n"
            "for path in sorted(glob.glob(os.path.join(sys.argv[1], 'ansible_collections/appvault/backup/plugins/module_utils/_*.py'))):\n"
            "    importlib.import_module('ansible_collections.appvault.backup.plugins.module_utils.' + os.path.basename(path)[:-3])\n"
            "from ansible_collections.appvault.backup.plugins.module_utils import _hostrun\n"
            "print(_hostrun.__file__)")
    out = subprocess.run([sys.executable, '-I', '-c', code, str(tmp_path)], check=False, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(tmp_path))
