"""The fault-injection suite's own servers (it stops and restarts them) and its results file.

Each case records what it observed in ``RESULTS`` (fault, phase, outcome); at the end of the session they are
written to build/faults/results.json, from which tests/faults/render.py makes docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.common import free_port, wait_for
from harness.mysql import MariaDBServer
from harness.pg import PgServer
from harness.procwatch import port_open
from harness.sshhost import SshHost

RESULTS_FILE = Path(os.environ.get('APPVAULT_FAULTS_RESULTS', Path(__file__).resolve().parents[2] / 'build' / 'faults' / 'results.json'))
RESULTS = []


@pytest.fixture(scope='session')
def pg_server(work_base):
    server = PgServer(work_base, 'faults').start()
    yield server
    server.halt()
    server.stop()


@pytest.fixture(scope='session')
def mariadb_server(work_base):
    server = MariaDBServer(work_base, 'mfaults').start()
    # The rich fixture's triggers and views name this DEFINER (as in tests/integration's source server).
    server.sql("CREATE USER 'app_owner'@'%' IDENTIFIED BY 'owner-pw'; GRANT ALL ON *.* TO 'app_owner'@'%'")
    yield server
    server.stop()


class S3Endpoint:
    """`rclone serve s3` on a fixed loopback port, stopped and started again by the "endpoint stopped" case."""

    key_id = 'appvault-faults'

    def __init__(self, root):
        self.root = root
        (root / 'backups').mkdir()
        self.port = free_port()
        self.secret = 'S3-secret-%s' % secrets.token_hex(8)
        self.proc = None

    def start(self):
        if self.proc is not None and self.proc.poll() is None:
            return self
        # the key pair goes in the environment, not the argv
        env = dict(os.environ, RCLONE_AUTH_KEY='"%s,%s"' % (self.key_id, self.secret))
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / 'rclone'), 'serve', 's3', '--addr', '127.0.0.1:%d' % self.port,
                                      str(self.root)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_for(lambda: port_open(self.port), 60), 'rclone serve s3 does not answer on %d' % self.port
        return self

    def stop(self):
        """The endpoint goes away (killed); say what was done."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        assert not port_open(self.port)
        return 'the S3 endpoint (rclone serve s3) killed'

    def destination(self, prefix):
        """A destination without retries: a fault in the one attempt fails the upload."""
        return dict(name='offsite', kind='s3', endpoint='http://127.0.0.1:%d' % self.port, bucket='backups', prefix=prefix,
                    access_key_id=self.key_id, secret_access_key=self.secret, upload_cutoff='1M', chunk_size='5M', retries=0)

    def folder(self, prefix):
        return self.root / 'backups' / prefix


@pytest.fixture(scope='session')
def s3_endpoint(tmp_path_factory):
    endpoint = S3Endpoint(tmp_path_factory.mktemp('s3')).start()
    yield endpoint
    endpoint.stop()


@pytest.fixture(scope='session')
def ssh_host(tmp_path_factory):
    """A podman host with sshd: the host destination of the transfer cases (started only when one of them runs)."""
    host = SshHost(tmp_path_factory.mktemp('sshhost'))
    try:
        yield host.start()
    finally:
        host.remove()


SESSION_STARTED = time.time()


def write_results():
    """Merge this session's rows into the results file (a run of some cases, -k, keeps the others' rows)."""
    known = json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.exists() else {'cases': []}
    rows = {row['id']: row for row in known['cases']}
    rows.update((row['id'], row) for row in RESULTS)
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    data = dict(known, cases=list(rows.values()), last_session_seconds=round(time.time() - SESSION_STARTED), last_session_cases=len(RESULTS))
    if len(RESULTS) >= len(rows):  # this session ran every case
        data['full_run_seconds'] = data['last_session_seconds']
    RESULTS_FILE.write_text(json.dumps(data, indent=1, ensure_ascii=False) + '\n')


@pytest.fixture(scope='session')
def results():
    """The list each case appends its row to."""
    return RESULTS


@pytest.fixture(autouse=True)
def _flush_results():
    """Write the rows after every case, so an interrupted run keeps what it saw."""
    yield
    if RESULTS:
        write_results()
