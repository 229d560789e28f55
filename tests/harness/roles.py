"""The fixture app the role tests run against, and running the collection's playbooks on it (JSON results).

Used by tests/integration/test_roles.py and the fault-injection suite in tests/faults.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from harness.common import ansible_env
from harness.compare import pg_inventory
from harness.compare_mysql import mysql_inventory

REPO = Path(__file__).resolve().parents[2]
EVENTS_SCRIPT = """#!/bin/sh
# fixture app command: records when it ran; upgrade fails while $APPROOT/fail-upgrade exists, maintenance-on while
# $APPROOT/fail-maintenance exists, maintenance-off while $APPROOT/fail-maintenance-off exists
root=$(dirname "$0")
echo "$1" >> "$root/events.log"
case "$1" in
  maintenance-on) if [ -e "$root/fail-maintenance" ]; then echo "cannot enter maintenance" >&2; exit 5; fi; touch "$root/down" ;;
  maintenance-off) if [ -e "$root/fail-maintenance-off" ]; then echo "cannot leave maintenance" >&2; exit 6; fi; rm -f "$root/down" ;;
  version) cat "$root/VERSION" ;;
  upgrade) if [ -e "$root/fail-upgrade" ]; then echo "migration 2026_01 failed" >&2; exit 3; fi ;;
esac
"""


def book_argv(playbook, inventory, extra=None):
    argv = [str(Path(sys.executable).parent / 'ansible-playbook'), '-i', str(inventory), str(REPO / 'playbooks' / playbook)]
    if extra:
        argv += ['-e', json.dumps(extra)]
    return argv


def parse_book(proc):
    """(data, failures) of a finished ansible-playbook run with the json callback."""
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
    return data, failures


def run_book(playbook, inventory, extra=None):
    proc = subprocess.run(book_argv(playbook, inventory, extra), capture_output=True, text=True, env=ansible_env(), check=False)
    data, failures = parse_book(proc)
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


def backup(app, **extra):
    proc, data, failures = run_book('backup.yml', app.inventory, extra)
    assert proc.returncode == 0 and not failures, (failures, proc.stderr[-3000:])
    return data['global_custom_stats']['appvault_backup']['localhost']
