"""job_wait against real async jobs: progress lines while a job writes, its result when it ends, a failure passed on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness.common import ansible_env, wait_for

WRITER = """
import os, sys, time
path = os.path.join(sys.argv[1], 'out.partial')
with open(path, 'wb') as fileobj:
    for _ in range(8):
        fileobj.write(os.urandom(256 * 1024))
        fileobj.flush()
        time.sleep(0.4)
sys.exit(int(sys.argv[2]))
"""


def run_job(tmp_path, exit_code):
    play = [{'hosts': 'localhost', 'gather_facts': False, 'connection': 'local', 'tasks': [
        {'name': 'start', 'ansible.builtin.command': {'argv': [sys.executable, '-c', WRITER, str(tmp_path), str(exit_code)]},
         'async': 120, 'poll': 0, 'register': 'job'},
        {'name': 'wait', 'appvault.backup.job_wait': {'jid': '{{ job.ansible_job_id }}', 'watch': str(tmp_path), 'total': 2 * 1024 * 1024,
                                                      'label': 'writer', 'poll': 0.5}, 'register': 'waited', 'ignore_errors': True},
        {'name': 'show', 'ansible.builtin.debug': {'var': 'waited'}}]}]
    path = tmp_path / 'play.yml'
    path.write_text(json.dumps(play))
    env = ansible_env()
    env['ANSIBLE_STDOUT_CALLBACK'] = 'ansible.builtin.default'
    env['ANSIBLE_CALLBACK_RESULT_FORMAT'] = 'json'
    argv = [str(Path(sys.executable).parent / 'ansible-playbook'), '-i', 'localhost,', str(path)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=300)


def test_progress_lines_then_the_jobs_result(tmp_path):
    proc = run_job(tmp_path, 0)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip().startswith('[localhost] writer:')]
    assert len(lines) >= 3, proc.stdout
    assert any('of ~2.0 MiB' in line and '%' in line for line in lines), lines
    sizes = [line.split('writer: ')[1].split(' ')[0] for line in lines]
    assert len(set(sizes)) >= 2, 'the byte count never grew: %s' % lines
    assert '"rc": 0' in proc.stdout and '"waited":' in proc.stdout


def test_a_failing_job_fails_the_wait_with_its_rc(tmp_path):
    proc = run_job(tmp_path, 3)
    assert '"rc": 3' in proc.stdout, proc.stdout
    assert '"failed": true' in proc.stdout


CRASHING_MODULE = """#!/usr/bin/python
from ansible.module_utils.basic import AnsibleModule


def main():
    AnsibleModule(argument_spec={})
    {}['jobs']


if __name__ == '__main__':
    main()
"""


def test_a_module_that_crashes_is_named_with_its_error(tmp_path):
    """An exception the module did not handle: the wait fails with the exception's message, not "without a result"."""
    library = tmp_path / 'library'
    library.mkdir()
    (library / 'crashing.py').write_text(CRASHING_MODULE)
    play = [{'hosts': 'localhost', 'gather_facts': False, 'connection': 'local', 'tasks': [
        {'name': 'start', 'crashing': {}, 'async': 60, 'poll': 0, 'register': 'job'},
        {'name': 'wait', 'appvault.backup.job_wait': {'jid': '{{ job.ansible_job_id }}', 'label': 'crash', 'poll': 0.5}}]}]
    path = tmp_path / 'play.yml'
    path.write_text(json.dumps(play))
    env = dict(ansible_env(), ANSIBLE_LIBRARY=str(library))
    argv = [str(Path(sys.executable).parent / 'ansible-playbook'), '-i', 'localhost,', str(path)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=300)
    assert proc.returncode != 0
    assert "crash: the module stopped on an unexpected error: 'jobs'" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_waiting_renews_the_maintenance_lease(tmp_path):
    """With renew_lease the host-side timer counts from the controller's last check: a job longer than the lease does
    not see maintenance lifted under it; once nobody checks any more, the lease ends as usual."""
    backups = tmp_path / 'backups'
    backups.mkdir(mode=0o700)
    marks = tmp_path / 'marks'
    marks.mkdir()

    def stamp(name):
        # written whole under a temporary name, then renamed: the file appears with its time in it, so the test,
        # which waits for it to exist, never reads it half-written
        return ['sh', '-c', 'date +%%s.%%N > %s.tmp && mv %s.tmp %s' % ((marks / name,) * 3)]

    play = [{'hosts': 'localhost', 'gather_facts': False, 'connection': 'local', 'tasks': [
        {'name': 'on', 'appvault.backup.maintenance': {'state': 'on', 'path': str(backups), 'token': 'run-1', 'lease': 4,
                                                       'maintenance_on': [stamp('on')], 'maintenance_off': [stamp('off')]}},
        {'name': 'start', 'ansible.builtin.command': {'argv': ['sh', '-c', 'sleep 9; ' + stamp('job')[2]]},
         'async': 120, 'poll': 0, 'register': 'job'},
        {'name': 'wait', 'appvault.backup.job_wait': {'jid': '{{ job.ansible_job_id }}', 'poll': 0.5, 'renew_lease': str(backups)}}]}]
    path = tmp_path / 'play.yml'
    path.write_text(json.dumps(play))
    argv = [str(Path(sys.executable).parent / 'ansible-playbook'), '-i', 'localhost,', str(path)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=ansible_env(), check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert wait_for((marks / 'off').exists, 20), 'the lease never ended'
    job_end, off = float((marks / 'job').read_text()), float((marks / 'off').read_text())
    assert off > job_end, 'the timer lifted maintenance %.1f s before the job it guarded ended' % (job_end - off)
    assert off - job_end < 4 + 6, 'the lease ended %.1f s after the last check' % (off - job_end)


def test_the_wait_ends_with_the_job_not_a_poll_later(tmp_path):
    """With poll 10 the old checks (0.2, 0.6, 1.4, 3.0, 6.2 s ...) would have seen a 3.5 s job end at 6.2 s; the
    host-side wait notices the end within its 0.1 s step. The margin (2 s) is for a busy machine."""
    play = [{'hosts': 'localhost', 'gather_facts': False, 'connection': 'local', 'tasks': [
        {'name': 'start', 'ansible.builtin.command': {'argv': ['sleep', '3.5']}, 'async': 60, 'poll': 0, 'register': 'job'},
        {'name': 'wait', 'appvault.backup.job_wait': {'jid': '{{ job.ansible_job_id }}', 'poll': 10}, 'register': 'waited'},
        {'name': 'show', 'ansible.builtin.debug': {'msg': 'waited={{ waited.waited }} rc={{ waited.rc }}'}}]}]
    path = tmp_path / 'play.yml'
    path.write_text(json.dumps(play))
    argv = [str(Path(sys.executable).parent / 'ansible-playbook'), '-i', 'localhost,', str(path)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=ansible_env(), check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    waited = float(proc.stdout.split('waited=')[1].split()[0])
    assert 'rc=0' in proc.stdout
    assert 3.0 <= waited < 5.5, 'the job (3.5 s) was seen to end after %.1f s of waiting' % waited
