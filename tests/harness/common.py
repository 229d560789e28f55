"""Helpers shared by the test suites: ports, running as another OS user, running modules through Ansible."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / 'build' / 'collections'


def wait_for(predicate, timeout, step=0.2):
    """Poll ``predicate`` until it holds or ``timeout`` seconds passed; return its last value."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def cached_bytes(*paths):
    """How many bytes of ``paths`` (together) are in the page cache (util-linux fincore, which asks mincore(2))."""
    paths = [str(p) for p in paths]
    total = 0
    for i in range(0, len(paths), 1000):
        out = subprocess.run(['fincore', '--bytes', '--noheadings', '--output', 'RES'] + paths[i:i + 1000], capture_output=True,
                             text=True, check=True).stdout
        total += sum(int(value) for value in out.split())
    return total


def delalloc_files(paths):
    """Which of ``paths`` still have data only in memory: ext4 delays the allocation of written data until it goes
    to disk, and ``filefrag -v`` flags such extents ``delalloc``; a file that was synced has none."""
    paths = [str(p) for p in paths]
    out = ''.join(subprocess.run(['filefrag', '-v'] + paths[i:i + 1000], capture_output=True, text=True, check=True).stdout
                  for i in range(0, len(paths), 1000))
    pending, current = [], None
    for line in out.splitlines():
        if line.startswith('File size of '):
            current = line[len('File size of '):].rsplit(' is ', 1)[0]
        elif 'delalloc' in line and current is not None and current not in pending:
            pending.append(current)
    return pending


def run_as(user, argv, check=True):
    """Run argv as ``user`` (root hands it down with runuser; others run it as themselves)."""
    if os.geteuid() == 0 and user != 'root':
        argv = ['runuser', '-u', user, '--'] + argv
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode:
        raise RuntimeError('%s failed (%d): %s %s' % (argv, proc.returncode, proc.stdout, proc.stderr))
    return proc


def ansible_env():
    env = dict(os.environ)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': str(COLLECTIONS),
        'ANSIBLE_COLLECTIONS_SCAN_SYS_PATH': 'true',
        'ANSIBLE_STDOUT_CALLBACK': 'ansible.posix.json',
        'ANSIBLE_LOCALHOST_WARNING': 'false',
        'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false',
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_FORCE_COLOR': '0',
        'ANSIBLE_RETRY_FILES_ENABLED': 'false',
        'ANSIBLE_SHOW_CUSTOM_STATS': 'true',
        'ANSIBLE_PYTHON_INTERPRETER': sys.executable,
        'PATH': str(Path(sys.executable).parent) + os.pathsep + env.get('PATH', ''),
    })
    return env


class PlaybookRun:
    """Result of one ansible-playbook run: ``results`` lists each task's module result on localhost."""

    def __init__(self, proc, data):
        self.proc = proc
        self.rc = proc.returncode
        self.data = data
        self.results = []
        for play in data.get('plays', []):
            for task in play.get('tasks', []):
                for host_result in task.get('hosts', {}).values():
                    self.results.append(host_result)
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    @property
    def last(self):
        return self.results[-1] if self.results else {}


def run_playbook(tasks, check=False, extra_args=(), verbosity=0):
    """Run ``tasks`` (a list of task dicts) on localhost through ansible-playbook; JSON in, JSON out."""
    play = [{'hosts': 'localhost', 'gather_facts': False, 'connection': 'local', 'tasks': tasks}]
    with tempfile.TemporaryDirectory(prefix='appvault-play-') as tmp:
        path = Path(tmp) / 'play.yml'
        path.write_text(json.dumps(play))
        argv = [str(Path(sys.executable).parent / 'ansible-playbook'), '-i', 'localhost,', str(path)]
        if check:
            argv.append('--check')
        if verbosity:
            argv.append('-' + 'v' * verbosity)
        argv.extend(extra_args)
        proc = subprocess.run(argv, capture_output=True, text=True, env=ansible_env(), check=False)
    try:
        start = proc.stdout.index('{')
        data = json.loads(proc.stdout[start:])
    except ValueError:
        data = {}
    return PlaybookRun(proc, data)


def run_module(module, args, check=False, **kwargs):
    """Run one module of this collection through Ansible; return its result dict (with 'failed' on failure)."""
    run = run_playbook([{'name': module, 'appvault.backup.%s' % module: args, 'ignore_errors': True}], check=check, **kwargs)
    if not run.results:
        raise AssertionError('ansible-playbook produced no result (rc %s): %s %s' % (run.rc, run.stdout[-3000:], run.stderr[-3000:]))
    result = run.last
    result['_run'] = run
    return result


def _descends_from(pid, ancestor):
    """Whether ``pid`` is ``ancestor`` or one of its descendants (other work on the machine is not ours to judge)."""
    for _hop in range(64):
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
        try:
            stat_line = Path('/proc/%d/stat' % pid).read_text()
        except OSError:
            return False
        pid = int(stat_line.rsplit(')', 1)[1].split()[1])
    return False


def run_module_sampling_argv(module, args, secret, tools):
    """Run a module through Ansible in a child process while reading every process's argv from /proc.

    Returns (exit status, argv lists that contained ``secret``, argv lists of the ``tools`` seen running).
    """
    script = Path(__file__).resolve().parents[1] / 'integration' / '_run_module.py'
    secret = secret.encode()
    leaks, seen = [], []
    proc = subprocess.Popen([sys.executable, str(script), module, repr(args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=str(REPO))
    while proc.poll() is None:
        for pid in os.listdir('/proc'):
            if not pid.isdigit() or int(pid) == proc.pid:
                continue
            try:
                argv = Path('/proc/%s/cmdline' % pid).read_bytes().split(b'\0')
            except OSError:
                continue
            if any(secret in a for a in argv) and b'_run_module.py' not in b' '.join(argv):
                leaks.append(argv)
            name = os.path.basename(argv[0].decode(errors='replace'))
            if name in tools and not {b'--version', b'--help'} & set(argv) and _descends_from(int(pid), proc.pid):
                seen.append(argv)
    proc.communicate()
    return proc.returncode, leaks, seen
