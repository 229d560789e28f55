"""AWX / Automation Platform: the execution environment's build context, the setup playbook, and jobs run the way
AWX runs them.

A job here is what AWX hands ansible-runner: a fresh private data directory with the project (extensions/awx/project,
playbooks that import the collection's), an inventory script like the one AWX writes, the survey's answers as extra
vars (strings, tagged !unsafe as AWX writes them), the custom credential's injected environment variable, and the
machine credential's SSH key. The host is a podman container from the test host image, reached over SSH on a
published 127.0.0.1 port, with a small app (a PostgreSQL database, uploads, .env) on it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from harness.common import REPO, ansible_env

BIN = Path(sys.executable).parent
DB_PASSWORD = 'awx-Db#Pw 7f3q%s' % secrets.token_hex(4)
SECRET_ENV = 'APPVAULT_DB_PASSWORD'
HOST = 'shop01'
APP = {
    'name': 'shop',
    'profile': 'generic',
    'root': '/srv/shop',
    'owner': 'app',
    'databases': [{'id': 'main', 'engine': 'postgresql', 'name': 'shop', 'login_host': '127.0.0.1', 'login_user': 'shop',
                   'login_password': "{{ lookup('ansible.builtin.env', '%s') }}" % SECRET_ENV}],
    'paths': [{'id': 'uploads', 'path': 'storage/uploads'}, {'id': 'config', 'path': '.env'}],
    'commands': {'version': 'cat VERSION'},
}
PREPARE = r"""
set -eu
pg_ctlcluster "$(pg_lsclusters --no-header | awk 'NR == 1 {print $1}')" main start
groupadd -g 1500 app
useradd -u 1500 -g app -d /srv/shop -M -s /bin/sh app
mkdir -p /srv/shop/storage/uploads/2026
printf '1.4.2\n' > /srv/shop/VERSION
for i in $(seq 1 20); do printf 'invoice %s\n' "$i" > "/srv/shop/storage/uploads/2026/invoice-$i.txt"; done
printf 'APP_NAME=shop\nAPP_KEY=base64:c2hvcC1rZXk=\n' > /srv/shop/.env
chown -R app:app /srv/shop
chmod 0600 /srv/shop/.env
runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -v pw="$DB_PASSWORD" -d postgres <<'SQL'
CREATE ROLE shop LOGIN CREATEDB PASSWORD :'pw';  -- a restore swaps in a verified side database
CREATE DATABASE shop OWNER shop ENCODING 'UTF8' TEMPLATE template0;
SQL
PGPASSWORD=$DB_PASSWORD psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U shop -d shop <<'SQL'
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL UNIQUE);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers (id),
                     amount numeric(10, 2) NOT NULL CHECK (amount > 0), created_at timestamptz DEFAULT now());
CREATE INDEX orders_customer ON orders (customer_id);
CREATE VIEW order_totals AS SELECT customer_id, sum(amount) AS total FROM orders GROUP BY customer_id;
INSERT INTO customers (name) SELECT 'customer ' || i FROM generate_series(1, 200) AS i;
INSERT INTO orders (customer_id, amount) SELECT 1 + i % 200, 100 + i FROM generate_series(1, 3000) AS i;
SQL
"""


def requirement_pin(name):
    line = next(line for line in (REPO / 'requirements.txt').read_text().splitlines() if line.lower().startswith(name + '=='))
    return line


# -- the execution environment -----------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def ee_context():
    """`make ee`: the collection tarball and ansible-builder's build context under build/ee (docs/awx.md)."""
    proc = subprocess.run(['make', '--no-print-directory', 'ee'], cwd=str(REPO), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return REPO / 'build' / 'ee' / 'context'


def test_execution_environment_build_context(ee_context):
    containerfile = (ee_context / 'Containerfile').read_text()
    build = ee_context / '_build'
    assert 'ARG EE_BASE_IMAGE="localhost/appvault-ee-base:latest"' in containerfile
    assert 'ARG ANSIBLE_INSTALL_REFS="%s %s"' % (requirement_pin('ansible-core'), requirement_pin('ansible-runner')) in containerfile
    # The collection's own dependency files, copied as they are, and not added a second time by introspection.
    assert (build / 'bindep.txt').read_text() == (REPO / 'meta' / 'ee-bindep.txt').read_text()
    assert (build / 'requirements.txt').read_text() == (REPO / 'meta' / 'ee-requirements.txt').read_text()
    assert (build / 'exclude-collections.txt').read_text().split() == ['appvault.backup']
    assert '--exclude-collection-reqs=exclude-collections.txt' in containerfile
    # The collection itself, installed by ansible-galaxy from the tarball in the context.
    assert yaml.safe_load((build / 'requirements.yml').read_text()) == {
        'collections': [{'name': '/build/collections/appvault-backup.tar.gz', 'type': 'file'}]}
    assert 'ansible-galaxy collection install' in containerfile and 'COPY _build /build' in containerfile
    with tarfile.open(build / 'collections' / 'appvault-backup.tar.gz') as tar:
        names = set(tar.getnames())
        info = json.load(tar.extractfile('MANIFEST.json'))['collection_info']
    galaxy = yaml.safe_load((REPO / 'galaxy.yml').read_text())
    assert (info['namespace'], info['name'], info['version']) == ('appvault', 'backup', galaxy['version'])
    assert {'meta/execution-environment.yml', 'meta/ee-bindep.txt', 'meta/ee-requirements.txt', 'meta/runtime.yml',
            'roles/backup/tasks/main.yml', 'roles/restore/tasks/main.yml', 'playbooks/backup.yml',
            'plugins/modules/postgresql_dump.py'} <= names
    assert not [n for n in names if n.split('/')[0] in ('.venv', 'build', '.git', '.pytest_cache', '.ruff_cache', '.hypothesis')]


def test_other_images_get_the_collections_dependencies_by_introspection(ee_context, tmp_path):
    """An image built from another definition that lists appvault.backup gets meta/ee-*.txt, not the dev pins."""
    collections = tmp_path / 'collections'
    subprocess.run([str(BIN / 'ansible-galaxy'), 'collection', 'install', '--force', '-p', str(collections),
                    str(ee_context / '_build' / 'collections' / 'appvault-backup.tar.gz')],
                   capture_output=True, text=True, check=True, env=ansible_env())
    proc = subprocess.run([sys.executable, str(ee_context / '_build' / 'scripts' / 'introspect.py'), 'introspect', str(collections)],
                          capture_output=True, text=True, check=True)
    found = yaml.safe_load(proc.stdout)
    bindep = [line for line in (REPO / 'meta' / 'ee-bindep.txt').read_text().splitlines() if line and not line.startswith('#')]
    assert found['system'] == ['%s  # from collection appvault.backup' % line for line in bindep]
    assert found['python'] == []


def test_bindep_names_debian_packages_that_exist():
    """The [platform:dpkg] names are real Debian packages (installed here, or known to apt)."""
    from bindep.depends import Depends

    depends = Depends((REPO / 'meta' / 'ee-bindep.txt').read_text())
    packages = [rule[0] for rule in depends.active_rules(['default', 'platform:dpkg', 'platform:debian'])]
    assert {'tar', 'zstd', 'postgresql-client', 'mariadb-client', 'openssh-client', 'age', 'rsync'} <= set(packages)
    unknown = [name for name in packages
               if subprocess.run(['dpkg-query', '-W', name], capture_output=True, check=False).returncode
               and subprocess.run(['apt-cache', 'show', '--no-all-versions', name], capture_output=True, check=False).returncode]
    assert not unknown, unknown


# -- the setup playbook --------------------------------------------------------------------------------------------


def test_awx_setup_playbook_syntax():
    proc = subprocess.run([str(BIN / 'ansible-playbook'), '--syntax-check', '-i', 'localhost,', str(REPO / 'playbooks' / 'awx_setup.yml')],
                          capture_output=True, text=True, env=ansible_env(), check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


RENDER = """---
- name: Render the AWX settings as awx_setup.yml passes them to the controller
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files:
    - %(settings)s
  tasks:
    - name: Write them out
      ansible.builtin.copy:
        dest: %(out)s
        mode: "0600"
        content: >-
          {{ {'surveys': appvault_awx_surveys, 'rrule': appvault_awx_rrule, 'names': appvault_awx_names,
              'injectors': {appvault_awx_db_password_env: appvault_awx_password_placeholder}} | to_json }}
      vars:
        appvault_awx_password_placeholder: !unsafe "{{ password }}"
"""


def test_awx_setup_settings_render(tmp_path):
    """The surveys as the controller receives them: the restore choices filled from a catalogue read, the schedule's
    time zone, and the credential type's injector left for AWX to fill in."""
    out = tmp_path / 'rendered.json'
    book = tmp_path / 'render.yml'
    book.write_text(RENDER % {'settings': REPO / 'playbooks' / 'vars' / 'awx_setup.yml', 'out': out})
    names = ['shop-20260103T030000Z.tar.zst', 'shop-20260101T030000Z.tar.zst']
    proc = subprocess.run([str(BIN / 'ansible-playbook'), '-i', 'localhost,', str(book), '-e',
                           json.dumps({'appvault_awx_backup_names': names, 'appvault_awx_timezone': 'Asia/Tokyo'})],
                          capture_output=True, text=True, env=ansible_env(), check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rendered = json.loads(out.read_text())
    backup_name = next(q for q in rendered['surveys']['restore']['spec'] if q['variable'] == 'appvault_restore_backup')
    assert backup_name['choices'] == ['latest'] + names and backup_name['default'] == 'latest'
    assert rendered['rrule'] == 'DTSTART;TZID=Asia/Tokyo:20260101T030000 RRULE:FREQ=DAILY;INTERVAL=2'
    assert rendered['names']['workflow'] == 'appvault backup then verify'
    assert rendered['injectors'] == {'APPVAULT_DB_PASSWORD': '{{ password }}'}
    keep = next(q for q in rendered['surveys']['backup']['spec'] if q['variable'] == 'appvault_backup_keep')
    assert keep['default'] == 7  # an integer question's default stays a number


# -- jobs as AWX runs them -----------------------------------------------------------------------------------------


class AwxHost:
    """A podman container from the test host image: sshd on a published 127.0.0.1 port, the shop app inside."""

    def __init__(self, workdir):
        self.run_id = secrets.token_hex(5)
        self.name = 'appvault-awx-%s' % self.run_id
        self.network = self.name
        self.key = workdir / 'id_ed25519'
        self.port = None

    def start(self):
        image = subprocess.run(['bash', str(REPO / 'tests' / 'setup' / 'images.sh'), 'bookworm'],
                               capture_output=True, text=True, check=True).stdout.split()[-1]
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'appvault-awx-test', '-f', str(self.key)], check=True)
        podman('network', 'create', '--disable-dns', self.network)
        podman('run', '--detach', '--name', self.name, '--hostname', HOST, '--network', self.network,
               '--publish', '127.0.0.1::22', '--label', 'appvault.awx.run=%s' % self.run_id,
               '--env', 'AUTHORIZED_KEY=%s' % Path(str(self.key) + '.pub').read_text().strip(), image,
               '/bin/sh', '-c', 'install -d -m 0700 /root/.ssh /run/sshd && printf "%s\\n" "$AUTHORIZED_KEY" > /root/.ssh/authorized_keys'
               ' && ssh-keygen -A && exec /usr/sbin/sshd -D -e')
        self.port = int(podman('port', self.name, '22/tcp').rsplit(':', 1)[1])
        self.wait_for_sshd()
        self.sh(PREPARE, DB_PASSWORD=DB_PASSWORD)
        return self

    def wait_for_sshd(self):
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=5) as sock:
                    if sock.recv(64).startswith(b'SSH-2.0-OpenSSH'):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError('sshd in %s did not answer on 127.0.0.1:%d' % (self.name, self.port))
            time.sleep(0.5)

    def remove(self):
        subprocess.run(['podman', 'rm', '--force', '--time', '0', self.name], capture_output=True, check=False)
        subprocess.run(['podman', 'network', 'rm', '--force', self.network], capture_output=True, check=False)

    def sh(self, script, **env):
        argv = ['exec', '-i']
        for key, value in env.items():
            argv += ['--env', '%s=%s' % (key, value)]
        return podman(*argv + [self.name, 'sh', '-c', script])

    def sql(self, query):
        return self.sh('PGPASSWORD=$DB_PASSWORD psql -X -A -t -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U shop -d shop -c "$Q"',
                       DB_PASSWORD=DB_PASSWORD, Q=query).strip()

    def state(self):
        """The data a restore must bring back: table rows, the view, every file under the app's paths."""
        files = self.sh('cd /srv/shop && find storage/uploads .env -type f -print0 | sort -z | xargs -0 sha256sum')
        return {
            'orders': self.sql('SELECT count(*), sum(amount) FROM orders'),
            'customers': self.sql('SELECT count(*) FROM customers'),
            'view': self.sql("SELECT coalesce(pg_get_viewdef(to_regclass('order_totals')), 'missing')"),
            'files': files,
        }

    def backups(self):
        return sorted(self.sh('ls -1 /var/backups/appvault 2>/dev/null || true').split())


def podman(*argv):
    proc = subprocess.run(['podman'] + list(argv), capture_output=True, text=True, check=False)
    if proc.returncode:
        raise AssertionError('podman %s failed (%d): %s' % (' '.join(argv[:3]), proc.returncode, proc.stderr[-2000:]))
    return proc.stdout


class UnsafeText(str):
    """A string AWX writes into env/extravars with the !unsafe tag (user-supplied: never templated)."""


def unsafe_representer(dumper, data):
    return dumper.represent_scalar('!unsafe', str(data))


class AwxDumper(yaml.SafeDumper):
    pass


AwxDumper.add_representer(UnsafeText, unsafe_representer)


def as_unsafe(value):
    if isinstance(value, str):
        return UnsafeText(value)
    if isinstance(value, dict):
        return {k: as_unsafe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_unsafe(v) for v in value]
    return value


INVENTORY_SCRIPT = """#!%(python)s
# Written like the inventory script AWX puts in a job's private data directory.
import json
import sys

DATA = %(data)s
print(json.dumps(DATA if '--list' in sys.argv else {}))
"""


class Job:
    """One finished ansible-runner job: status, events, stdout, the set_stats artifacts."""

    def __init__(self, runner, private_data_dir):
        self.runner = runner
        self.status = runner.status
        self.private_data_dir = private_data_dir
        self.artifact_dir = Path(runner.config.artifact_dir)
        files = sorted((self.artifact_dir / 'job_events').glob('*.json'), key=lambda p: int(p.name.split('-')[0]))
        self.events = [json.loads(p.read_text()) for p in files]
        self.stdout = (self.artifact_dir / 'stdout').read_text()
        stats = [e for e in self.events if e['event'] == 'playbook_on_stats']
        self.artifacts = stats[-1]['event_data'].get('artifact_data', {}) if stats else {}

    def failures(self):
        return [(e['event_data'].get('task'), e['event_data']['res'].get('msg')) for e in self.events
                if e['event'] == 'runner_on_failed' and not e['event_data'].get('ignore_errors')]

    def ran(self, task_name):
        return any(e['event'] == 'runner_on_ok' and e['event_data'].get('task') == task_name for e in self.events)

    def leaks(self, secret):
        """Where the secret shows up in what AWX keeps of a job: its events, stdout and every other artefact."""
        found = []
        for path in sorted(self.artifact_dir.rglob('*')):
            if not path.is_file() or secret not in path.read_text(errors='replace'):
                continue
            if path.name == 'command':
                # runner records the job's environment here (AWX keeps it as the job's job_env and shows names with
                # PASSWORD masked): the injected variable is expected there, and only there.
                command = json.loads(path.read_text())
                if command.get('env', {}).get(SECRET_ENV) == secret:
                    del command['env'][SECRET_ENV]
                if secret not in json.dumps(command):
                    continue
            found.append(str(path.relative_to(self.artifact_dir)))
        return found

    def __repr__(self):
        return 'Job(%s, failures=%s, stdout=...%s)' % (self.status, self.failures(), self.stdout[-3000:])


@pytest.fixture(scope='module')
def awx_host(tmp_path_factory):
    host = AwxHost(tmp_path_factory.mktemp('awx-host'))
    try:
        yield host.start()
    finally:
        host.remove()


@pytest.fixture(scope='module')
def run_job(awx_host, tmp_path_factory):
    """run_job(playbook, extravars, verbosity=0): one job in a fresh private data directory laid out as AWX does."""
    import ansible_runner

    base = tmp_path_factory.mktemp('awx-jobs')
    counter = iter(range(1, 1000))
    hostvars = {
        'ansible_host': '127.0.0.1',
        'ansible_port': awx_host.port,
        'ansible_python_interpreter': '/usr/bin/python3',
        'appvault_app': APP,
    }
    inventory = {'all': {'children': ['appvault']}, 'appvault': {'hosts': [HOST]}, '_meta': {'hostvars': {HOST: hostvars}}}

    def run(playbook, extravars, verbosity=0):
        private = base / ('job-%d' % next(counter))
        shutil.copytree(str(REPO / 'extensions' / 'awx' / 'project'), str(private / 'project'))
        (private / 'inventory').mkdir()
        script = private / 'inventory' / 'hosts'
        script.write_text(INVENTORY_SCRIPT % {'python': sys.executable, 'data': json.dumps(inventory, indent=1)})
        script.chmod(0o700)
        env = private / 'env'
        env.mkdir()
        (env / 'extravars').write_text(yaml.dump(as_unsafe(extravars), Dumper=AwxDumper, default_flow_style=False))
        (env / 'envvars').write_text(yaml.safe_dump({
            SECRET_ENV: DB_PASSWORD,  # the custom credential type's injector
            'ANSIBLE_COLLECTIONS_PATH': str(REPO / 'build' / 'collections'),  # the execution environment's collections
            'ANSIBLE_SSH_ARGS': '-o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=/dev/null',
        }))
        (env / 'ssh_key').write_text(awx_host.key.read_text())  # the machine credential
        (env / 'ssh_key').chmod(0o600)
        (env / 'cmdline').write_text('-u root')
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv('PATH', str(BIN) + os.pathsep + os.environ.get('PATH', ''))
            runner = ansible_runner.run(private_data_dir=str(private), playbook=playbook, quiet=True, verbosity=verbosity)
        return Job(runner, private)

    return run


SURVEY_BACKUP = {'appvault_backup_keep': '7', 'appvault_backup_label': '', 'appvault_backup_compression': 'zstd',
                 'appvault_backup_quiesce': 'false', 'appvault_backup_checksums': 'true'}
SURVEY_RESTORE = {'appvault_restore_backup': 'latest', 'appvault_restore_upgrade': 'auto', 'appvault_restore_force': 'false',
                  'appvault_restore_force_reason': '', 'appvault_restore_keep_snapshot': 'false'}


def test_backup_list_restore_jobs(awx_host, run_job):
    before = awx_host.state()
    assert before['orders'] == '3000|4801500.00'

    # Backup, with the survey's answers as AWX passes them: strings ("7", "true").
    backup = run_job('backup.yml', SURVEY_BACKUP)
    assert backup.status == 'successful', backup
    summary = backup.artifacts['appvault_backup'][HOST]
    assert re.fullmatch(r'shop-\d{8}T\d{6}Z\.tar\.zst', summary['name']), summary
    size, digest = awx_host.sh('stat -c %s "$F" && sha256sum "$F"', F=summary['path']).split()[:2]
    assert (int(summary['size']), summary['sha256']) == (int(size), digest)
    assert float(summary['duration']) > 0
    assert backup.leaks(DB_PASSWORD) == []

    # List, as the workflow's next node: AWX passes the backup job's set_stats artifacts on as extra vars.
    listing = run_job('list.yml', dict(backup.artifacts, appvault_list_verify='true'))
    assert listing.status == 'successful', listing
    assert listing.artifacts['appvault_list'][HOST] == [summary['name']]
    assert listing.leaks(DB_PASSWORD) == []

    awx_host.sql('DELETE FROM orders WHERE id % 2 = 0; DROP VIEW order_totals')
    awx_host.sh('rm /srv/shop/storage/uploads/2026/invoice-3.txt && echo BROKEN=1 > /srv/shop/.env')
    damaged = awx_host.state()
    assert damaged['orders'] != before['orders']

    # The restore survey's default answer for the confirmation: a preview, and a failed job that says what to do.
    preview = run_job('restore.yml', dict(SURVEY_RESTORE, appvault_restore_confirm='false'))
    assert preview.status == 'failed'
    assert 'Set appvault_restore_confirm=true' in preview.failures()[-1][1]
    assert awx_host.state()['orders'] == damaged['orders']

    # Confirmed, the backup chosen by name as listed; -vvv, as a job run in debug would be.
    restore = run_job('restore.yml', dict(SURVEY_RESTORE, appvault_restore_backup=summary['name'], appvault_restore_confirm='true'),
                      verbosity=3)
    assert restore.status == 'successful', restore
    restored = restore.artifacts['appvault_restore'][HOST]
    assert restored['name'] == summary['name']
    assert restored['sha256'] == summary['sha256'] and restored['checksum'] == 'ok'
    assert restored['databases'] == ['main'] and restored['upgraded'] is False
    assert awx_host.state() == before
    for job in (preview, restore):
        assert job.leaks(DB_PASSWORD) == []
    # The password did pass through the jobs - as a no_log option of the database modules, masked in every result.
    assert 'ESTABLISH SSH CONNECTION' in restore.stdout
    assert 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER' in json.dumps([e.get('event_data', {}).get('res') for e in restore.events])


def test_bad_survey_answers_fail_clearly_and_change_nothing(awx_host, run_job):
    archives = awx_host.backups()
    backup = run_job('backup.yml', dict(SURVEY_BACKUP, appvault_backup_keep='seven'))
    assert backup.status == 'failed'
    task, message = backup.failures()[-1]
    assert task.startswith('Validating arguments against arg spec'), task
    assert 'appvault_backup_keep' in message and 'int' in message, message
    assert awx_host.backups() == archives

    state = awx_host.state()
    restore = run_job('restore.yml', dict(SURVEY_RESTORE, appvault_restore_confirm='yes please'))
    assert restore.status == 'failed'
    task, message = restore.failures()[-1]
    assert task.startswith('Validating arguments against arg spec'), task
    assert 'appvault_restore_confirm' in message and 'bool' in message, message
    assert awx_host.state() == state
    for job in (backup, restore):
        assert job.leaks(DB_PASSWORD) == []
