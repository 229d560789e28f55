"""The fault-injection suite's own servers (it stops and restarts them) and its results file.

Each case records what it observed in ``RESULTS`` (fault, phase, outcome); at the end of the session they are
written to build/faults/results.json, from which tests/faults/render.py makes docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from harness.mysql import MariaDBServer
from harness.pg import PgServer

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
