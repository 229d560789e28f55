"""Benchmark building blocks shared by every scenario.

* ``Variant`` / ``interleave``: run A B C ... A B C ... so that drift of the machine (page cache, other users'
  load, thermal state) spreads over all variants instead of favouring one.
* ``measure``: wall time of one command plus the peak memory of its process tree, sampled from /proc.
* ``summarize`` / ``markdown_table`` / ``write_results``: medians, ratios, JSON + markdown under benchmarks/results/.
* ``machine_facts``: what the numbers were measured on (cores, memory, tool versions, load average).
* ``run_playbook``: run tasks through ansible-playbook (json callback) while measuring them.

Peak RSS method (see README.md): a sampler thread scans /proc every ``interval`` seconds, collects every
descendant of the measured command (by walking PPid links), and reads ``VmHWM`` (the kernel's own high-water
mark of resident memory for that process) and ``VmRSS`` from /proc/<pid>/status.  For an Ansible module the
process of interest is the python process whose command line names ``AnsiballZ_<module>`` (Ansible runs the
module inside that interpreter); its last seen VmHWM is the module's peak RSS.  Since VmHWM is a high-water mark,
sampling misses nothing but growth in the last ``interval`` before the process exits.  ``tree_peak_rss`` is the
largest sum of VmRSS over all descendants seen in one sample (for a playbook: Ansible's forked worker too);
``module_tree_peak_rss`` the largest sum over the module process and its own descendants (module + pg_dump + zstd).
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'tests'))

from harness.common import ansible_env  # the tests' Ansible environment, reused as is

MIB = 1024 * 1024


# -- process tree sampling -------------------------------------------------------------------------------------
def _read(path):
    try:
        with open(path, 'rb') as fileobj:
            return fileobj.read()
    except OSError:
        return None


def _ppid_map():
    """{pid: ppid} of every process now running."""
    out = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        raw = _read('/proc/%s/stat' % entry)
        if not raw:
            continue
        # the command name in parentheses may contain spaces: split after the last ')'
        fields = raw[raw.rfind(b')') + 2:].split()
        out[int(entry)] = int(fields[1])
    return out


def _status_kib(pid):
    raw = _read('/proc/%d/status' % pid)
    if not raw:
        return None
    found = {}
    for line in raw.decode('ascii', 'replace').splitlines():
        key, _sep, value = line.partition(':')
        if key in ('Name', 'VmHWM', 'VmRSS'):
            found[key] = value.strip().split()[0] if key != 'Name' else value.strip()
    if 'VmRSS' not in found:  # a zombie or a kernel thread
        return None
    return found


class TreeSampler(threading.Thread):
    """Sample the memory of every descendant of ``root_pid`` until ``stop()``."""

    def __init__(self, root_pid, match=None, interval=0.05, cpu=False):
        super().__init__(daemon=True)
        self.root_pid = root_pid
        self.match = match  # substring of the command line that marks "the module process"
        self.interval = interval
        self.procs = {}  # pid -> {'name', 'cmdline', 'hwm_kib', 'rss_kib'}
        # cpu: also split the CPU the tree's processes use from now on by what they do (cpu_category): {what: [user
        # s, kernel s]}.  A process's time between its last sample and its exit is not seen (at most ``interval``).
        self.cpu = {} if cpu else None
        self._cpu_seen = {}  # (pid, start time) -> (user ticks, kernel ticks) at the last sample
        if cpu:
            self._sample_cpu(self._descendants()[0], count=False)
        self.tree_peak_kib = 0
        self.module_tree_peak_kib = 0
        self.samples = 0
        self._halt = threading.Event()

    def _descendants(self):
        """(pids below the root, {pid: [child pids]})."""
        children = {}
        for pid, ppid in _ppid_map().items():
            children.setdefault(ppid, []).append(pid)
        out, todo = [], list(children.get(self.root_pid, []))
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out, children

    def _is_module(self, info):
        return bool(self.match) and self.match in info['cmdline'] and info['name'].startswith('python')

    def sample(self):
        rss = {}
        pids, children = self._descendants()
        for pid in pids:
            status = _status_kib(pid)
            if status is None:
                continue
            info = self.procs.get(pid)
            if info is None or info['name'] != status['Name']:  # new process, or the same pid after an exec
                cmdline = (_read('/proc/%d/cmdline' % pid) or b'').replace(b'\0', b' ').decode('utf-8', 'replace').strip()
                info = self.procs[pid] = {'name': status['Name'], 'cmdline': cmdline[:300], 'hwm_kib': 0, 'rss_kib': 0}
            info['hwm_kib'] = max(info['hwm_kib'], int(status.get('VmHWM', 0)))
            info['rss_kib'] = max(info['rss_kib'], int(status['VmRSS']))
            rss[pid] = int(status['VmRSS'])
        self.tree_peak_kib = max(self.tree_peak_kib, sum(rss.values()))
        if self.cpu is not None:
            self._sample_cpu(pids)
        # the module process and everything it started (pg_dump, zstd, psql ...)
        module_total, todo = 0, [pid for pid in rss if self._is_module(self.procs[pid])]
        while todo:
            pid = todo.pop()
            module_total += rss.get(pid, 0)
            todo.extend(children.get(pid, []))
        self.module_tree_peak_kib = max(self.module_tree_peak_kib, module_total)
        self.samples += 1

    def _sample_cpu(self, pids, count=True):
        """Add each process's user and kernel ticks since its last sample (or since it started, when it started after
        this sampler) to its cpu_category."""
        for pid in pids:
            raw = _read('/proc/%d/stat' % pid)
            if not raw:
                continue
            fields = raw[raw.rfind(b')') + 2:].split()
            key, now = (pid, fields[19]), (int(fields[11]), int(fields[12]))
            last = self._cpu_seen.get(key, (0, 0))
            self._cpu_seen[key] = now
            if count and now != last:
                name = raw[raw.find(b'(') + 1:raw.rfind(b')')].decode('utf-8', 'replace')
                what = cpu_category(name, (_read('/proc/%d/cmdline' % pid) or b'').replace(b'\0', b' ').decode('utf-8', 'replace'))
                spent = self.cpu.setdefault(what, [0.0, 0.0])
                spent[0] += (now[0] - last[0]) / _TICK
                spent[1] += (now[1] - last[1]) / _TICK

    def run(self):
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join()

    def report(self):
        module = [p for p in self.procs.values() if self._is_module(p)]
        return {
            'module_peak_rss': max(p['hwm_kib'] for p in module) * 1024 if module else None,
            'module_tree_peak_rss': self.module_tree_peak_kib * 1024 if module else None,
            'module_processes': len(module),
            'tree_peak_rss': self.tree_peak_kib * 1024,
            'samples': self.samples,
            'processes': sorted({p['name'] for p in self.procs.values()}),
        }


def cpu_category(name, cmdline):
    """What a process is doing, for TreeSampler's CPU split: ``module <name>`` for an Ansible module (AnsiballZ_<name>),
    ``postgres <command>`` for a PostgreSQL backend (the command its process title shows: COPY, SELECT, CREATE INDEX
    ...) or ``postgres <process>`` for the server's own processes, else the program's name (a python without an
    AnsiballZ file: a pipelined module, a receiver script)."""
    module = re.search(r'AnsiballZ_(\w+)\.py', cmdline)
    if module:
        return 'module ' + module.group(1)
    title = re.match(r'postgres: (?:[\w./-]+: )?(.*)', cmdline.strip())
    if title:
        # a backend: "<user> <database> <host>(<port>) <command>"; a server process: "checkpointer", "walwriter" ...
        backend = re.match(r'\S+ \S+ (?:\S+\(\d+\)|\[local\]) ?([A-Z][A-Z ]*[A-Z]|idle.*|)', title.group(1))
        what = backend.group(1) if backend else title.group(1)
        return 'postgres ' + ('parallel worker' if what.startswith('parallel worker') else (what or 'backend').split(' in ')[0])
    return name


def measure(argv, env=None, match=None, interval=0.05, cwd=None):
    """Run argv; return wall seconds, rc, output and the memory report of its process tree."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
    sampler = TreeSampler(proc.pid, match=match, interval=interval)
    sampler.start()
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - started
    sampler.stop()
    result = {'seconds': seconds, 'rc': proc.returncode, 'stdout': stdout.decode('utf-8', 'replace'),
              'stderr': stderr.decode('utf-8', 'replace')}
    result.update(sampler.report())
    return result


# -- other users' load ----------------------------------------------------------------------------------------------
_TICK = os.sysconf('SC_CLK_TCK')


def _busy_seconds():
    """CPU seconds the whole machine has spent busy since boot (all CPUs, idle and iowait excluded)."""
    fields = [int(x) for x in (_read('/proc/stat') or b'cpu 0').split(b'\n', 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / _TICK


class BusyTimeline(threading.Thread):
    """This machine's busy cores over time, until ``stop()``: every ``interval`` seconds, (the sample's wall time,
    the cores busy on average since the sample before), from /proc/stat.  That counts every process here, so the
    podman test hosts' too (see _busy_seconds)."""

    def __init__(self, interval=0.5):
        super().__init__(daemon=True)
        self.interval = interval
        self.samples = []
        self.cpu_seconds = 0.0  # the machine's busy CPU seconds from start() to stop()
        self._halt = threading.Event()

    def run(self):
        last = first = (time.time(), _busy_seconds())
        while not self._halt.wait(self.interval):
            now = (time.time(), _busy_seconds())
            self.samples.append((now[0], (now[1] - last[1]) / max(now[0] - last[0], 1e-6)))
            last = now
        self.cpu_seconds = _busy_seconds() - first[1]

    def stop(self):
        self._halt.set()
        self.join()

    def mean(self, spans=None, inside=True):
        """The busy cores averaged over the samples whose interval ended within one of ``spans`` ((start, end) Unix
        times; with ``inside`` false: within none of them); over all samples when ``spans`` is None."""
        def within(when):
            return any(start <= when <= end + self.interval for start, end in spans)

        picked = [busy for when, busy in self.samples if spans is None or within(when) == inside]
        return sum(picked) / len(picked) if picked else None


def tree_cpu_seconds(root):
    """utime+stime (+ reaped children's) of ``root`` and every live descendant."""
    ppids = _ppid_map()
    todo, total = [root], 0
    while todo:
        pid = todo.pop()
        raw = _read('/proc/%d/stat' % pid)
        if raw:
            fields = raw[raw.rfind(b')') + 2:].split()
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        todo.extend(p for p, pp in ppids.items() if pp == pid)
    return total / _TICK


class CpuAccount:
    """How much CPU the rest of the machine used while a run was going on.

    foreign = (machine busy time) - (this process and its waited-for children: ansible-playbook, pg_dump, zstd ...)
    - (the trees of ``daemon_pids()``: the database server and its backends).  Honest load note: on an otherwise idle
    machine it stays near 0; a sibling test run shows up as seconds of foreign CPU.
    """

    def __init__(self, daemon_pids=None):
        self.daemon_pids = daemon_pids or (lambda: [])

    def snapshot(self):
        times = os.times()
        ours = times.user + times.system + times.children_user + times.children_system
        ours += sum(tree_cpu_seconds(pid) for pid in self.daemon_pids())
        return _busy_seconds(), ours

    @staticmethod
    def foreign(before, after):
        return max(0.0, (after[0] - before[0]) - (after[1] - before[1]))

    def settle(self, max_cores=0.25, window=2.0, timeout=60.0):
        """Wait (up to ``timeout`` s) until other processes use less than ``max_cores`` CPUs over ``window`` s.

        Returns (seconds waited, foreign cores in the last window).
        """
        started = time.monotonic()
        while True:
            before = self.snapshot()
            time.sleep(window)
            cores = self.foreign(before, self.snapshot()) / window
            waited = time.monotonic() - started
            if cores < max_cores or waited >= timeout:
                return waited, cores


# -- orphans -------------------------------------------------------------------------------------------------------
def become_subreaper(enable=True):
    """Make this process the child subreaper of its descendants (Linux prctl PR_SET_CHILD_SUBREAPER).

    A command that backgrounds a stage (community.postgresql runs ``gzip <fifo >file & pg_dump >fifo``) leaves it
    orphaned when its shell exits; as subreaper we inherit and reap it, so its CPU time lands in our children's
    rusage (``cpu_seconds``) instead of looking like someone else's load.  Call it after starting daemons that
    should not become our children (the database server); ``enable=False`` turns it off again for a while (around
    starting podman containers, whose conmon daemonizes and would otherwise stay our child).
    """
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(36, 1 if enable else 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap_orphans(timeout=300.0):
    """Wait for (and reap) every remaining child; returns how many were reaped."""
    deadline, count = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.02)
            continue
        count += 1
    return count


# -- Ansible ---------------------------------------------------------------------------------------------------
def run_playbook(tasks, match=None, extra_env=None):
    """Run ``tasks`` on localhost through ansible-playbook; return measure()'s dict plus ``results`` (module results)."""
    play = [{'hosts': 'localhost', 'gather_facts': False, 'connection': 'local', 'tasks': tasks}]
    env = ansible_env()
    env.update(extra_env or {})
    with tempfile.TemporaryDirectory(prefix='appvault-bench-play-') as tmp:
        path = Path(tmp) / 'play.yml'
        path.write_text(json.dumps(play))
        argv = [str(Path(sys.executable).parent / 'ansible-playbook'), '-i', 'localhost,', str(path)]
        res = measure(argv, env=env, match=match)
    res['results'] = []
    try:
        data = json.loads(res['stdout'][res['stdout'].index('{'):])
    except ValueError:
        data = {}
    for play_data in data.get('plays', []):
        for task in play_data.get('tasks', []):
            res['results'].extend(task.get('hosts', {}).values())
    failed = [r for r in res['results'] if r.get('failed')]
    if res['rc'] or failed or not res['results']:
        detail = failed[0].get('msg') if failed else (res['stdout'][-2000:] + res['stderr'][-2000:])
        raise RuntimeError('ansible-playbook failed (rc %s): %s' % (res['rc'], detail))
    del res['stdout']
    return res


def _task_runs(plays):
    """(task name without its role prefix, start, end as Unix times) of each task the json callback timed, in order."""
    def stamp(text):
        return datetime.datetime.fromisoformat(text.replace('Z', '+00:00')).timestamp()

    for play in plays:
        for task in play.get('tasks', []):
            span = task['task'].get('duration') or {}
            if span.get('start') and span.get('end'):
                yield task['task']['name'].split(' : ', 1)[-1], stamp(span['start']), stamp(span['end'])


def task_times(plays):
    """{task name without its role prefix: wall seconds, summed over its runs} from the json callback's task times."""
    out = {}
    for name, start, end in _task_runs(plays):
        out[name] = out.get(name, 0.0) + (end - start)
    return out


def task_spans(plays, names):
    """{task name without its role prefix: (start, end) as Unix times} of the tasks of ``plays`` named in ``names``
    (the first run of each), from the json callback's task times."""
    out = {}
    for name, start, end in _task_runs(plays):
        if name in names and name not in out:
            out[name] = (start, end)
    return out


# Actions that run on the controller alone: no module is sent to a host for them.
CONTROLLER_ACTIONS = frozenset(('add_host', 'assert', 'debug', 'fail', 'group_by', 'import_role', 'import_tasks',
                                'include_role', 'include_tasks', 'include_vars', 'meta', 'pause', 'set_fact', 'set_stats',
                                'validate_argument_spec'))


def host_tasks(plays):
    """How many task results of the json callback's ``plays`` ran on a managed host: not skipped, not an action of
    the controller alone (set_fact, assert, include_* ...), not delegated to localhost.  Each one is a module (or an
    action plugin's commands) sent over the connection."""
    count = 0
    for play in plays:
        for task in play.get('tasks', []):
            for result in task.get('hosts', {}).values():
                items = result.get('results') if isinstance(result.get('results'), list) else [result]
                for item in items:
                    action = (item.get('action') or result.get('action') or '').rsplit('.', 1)[-1]
                    delegated = (item.get('_ansible_delegated_vars') or {}).get('ansible_delegated_host')
                    if not item.get('skipped') and action not in CONTROLLER_ACTIONS and delegated != 'localhost':
                        count += 1
    return count


def slowest(times, count=12):
    """The ``count`` longest of task_times()' tasks, longest first."""
    return dict(sorted(times.items(), key=lambda item: -item[1])[:count])


def slowest_text(times, count=4):
    """'task 12.3 s, task 4.5 s, ...': the ``count`` longest tasks of ``times`` (sorted again: a result read back
    from its JSON has its keys in name order)."""
    return ', '.join('%s %.1f s' % item for item in slowest(times, count).items())


# -- lower bounds ----------------------------------------------------------------------------------------------
GIB = 1024 * MIB
NOOP_TASKS = [{'ansible.builtin.ping': {}}]  # the cheapest ansible-playbook run: Ansible's fixed cost


def noop_playbook():
    return run_playbook(NOOP_TASKS, match='AnsiballZ_ping')


def sha256_cpu_per_gib(size=256 * MIB, rounds=3):
    """CPU seconds hashlib's sha256 (what our modules use) takes per GiB on this machine: the best of ``rounds``."""
    data = os.urandom(size)
    best = None
    for _round in range(rounds):
        started = time.process_time()
        hashlib.sha256(data).hexdigest()
        spent = (time.process_time() - started) * GIB / size
        best = spent if best is None else min(best, spent)
    return best


def cores():
    return len(os.sched_getaffinity(0))


def lower_bound(hand_runs, noop_runs, hashed_bytes, sha_per_gib, hand_cpu=True, verify_cpu=0.0):
    """A lower bound on the wall time of our variant of a job the hand variant does, from measured parts.

    Ours runs hand's tools on the same data, so it spends at least hand's CPU seconds (``hand_cpu=False`` when ours
    need not): what the run's CpuAccount counted, the database server's process tree included where the caller
    counts it (the server does the same COPY, the same index builds for ours).  It must sha256 ``hashed_bytes`` (what
    the archive format makes it hash: every member, the whole file).  All that work happens inside a module that
    ansible-playbook starts: not before Ansible has started and sent it, not after its result came back.  So ours
    takes at least the cheapest ansible-playbook run (one ping task), one after the other with that work, and the work
    takes no less wall time than its CPU seconds over the machine's cores.  ``verify_cpu``: CPU seconds of the
    checking that ours must do and hand does not (the database's per-table checksums: the smallest measured cost of
    reading every row once, see Suite.verify_cpu).  The smallest of each measured part is used, so the bound is low
    rather than typical.  Returns a dict: ``seconds`` and its parts."""
    parts = {
        'hand_cpu': min(r['cpu_seconds'] for r in hand_runs) if hand_cpu else 0.0,
        'noop_wall': min(r['seconds'] for r in noop_runs),
        'hashed_bytes': int(hashed_bytes),
        'sha256_cpu_per_gib': sha_per_gib,
        'verify_cpu': float(verify_cpu),
        'cores': cores(),
    }
    parts['hash_cpu'] = hashed_bytes / GIB * sha_per_gib
    parts['cpu'] = parts['hand_cpu'] + parts['hash_cpu'] + parts['verify_cpu']
    parts['seconds'] = parts['noop_wall'] + parts['cpu'] / parts['cores']
    return parts


def bound_text(bound, hand_seconds, target):
    """One line: the bound, its ratio to hand's median time and whether the target is within reach of it."""
    ratio_ = bound['seconds'] / hand_seconds
    checks = ' + per-table checksums %.2f' % bound['verify_cpu'] if bound.get('verify_cpu') else ''
    how = ('one-task ansible-playbook %.2f s + CPU (hand %.2f + sha256 of %s at %.2f s/GiB%s = %.2f s) / %d cores'
           % (bound['noop_wall'], bound['hand_cpu'], fmt_bytes(bound['hashed_bytes']), bound['sha256_cpu_per_gib'],
              checks, bound['cpu'], bound['cores']))
    verdict = ('OUT OF REACH in this run: no implementation of ours can be faster than %.2fx hand here' % ratio_
               if ratio_ > target else 'within reach of the bound')
    return 'lower bound %.2f s = %.2fx hand, %s; the <=%.2fx target is %s' % (bound['seconds'], ratio_, how, target, verdict)


# -- interleaved runs ------------------------------------------------------------------------------------------
class Variant:
    """One contender: ``run()`` returns a dict with at least ``seconds``; ``cleanup()`` runs after each run."""

    def __init__(self, key, label, run, cleanup=None):
        self.key = key
        self.label = label
        self.run = run
        self.cleanup = cleanup or (lambda: None)


def disk_written(path=REPO):
    """Bytes written so far to the block device that holds ``path`` (its /sys/dev/block/<major>:<minor>/stat, all
    writers on this machine), or None where ``path`` is on no block device (tmpfs, overlay)."""
    dev = os.stat(path).st_dev
    fields = (_read('/sys/dev/block/%d:%d/stat' % (os.major(dev), os.minor(dev))) or b'').split()
    return int(fields[6]) * 512 if len(fields) > 6 else None


def write_probe(directory, size=512 * 1024 * 1024):
    """Seconds this machine takes now to write ``size`` new bytes into a file in ``directory`` (the page cache) and
    to fsync them, as {'bytes', 'write_seconds', 'fsync_seconds'}; the file is removed.  On the benchmark machine the
    write() of new file data after a pause of a few seconds is far slower than the disk: see benchmarks/README.md,
    "Method"."""
    block = os.urandom(4 * 1024 * 1024)
    fd, path = tempfile.mkstemp(prefix='.write-probe-', dir=str(directory))
    try:
        started = time.monotonic()
        written = 0
        while written < size:
            written += os.write(fd, block)
        filled = time.monotonic()
        os.fsync(fd)
        return {'bytes': written, 'write_seconds': filled - started, 'fsync_seconds': time.monotonic() - filled}
    finally:
        os.close(fd)
        os.unlink(path)


def interleave(variants, rounds, log=print, cpu=None, settle=None):
    """Run every variant once per round, in the same order each round; return {key: [run dicts]}.

    Each run also gets ``load1_before``, ``cpu_seconds`` (CPU used by the run: this process, its children and the
    daemons' trees) and ``foreign_cpu`` (CPU seconds other processes used during it), see CpuAccount.  With
    ``settle`` (max foreign cores, e.g. 0.25) each run first waits, up to a minute, for the other users of the
    machine to be that quiet; the wait and the foreign load seen are recorded.  ``disk_written``: bytes the run wrote
    to this machine's disk (every writer, the database servers and test hosts included).  The page cache is written
    out before and after each run (untimed), so what a run left dirty is neither counted for the next one nor slows it
    down.
    """
    cpu = cpu or CpuAccount()
    runs = {v.key: [] for v in variants}
    for index in range(rounds):
        for variant in variants:
            waited = quiet = None
            os.sync()  # what set-up or another program left dirty is written out before, not during, the run
            if settle is not None:
                waited, quiet = cpu.settle(max_cores=settle)
            load = os.getloadavg()[0]
            before = cpu.snapshot()
            written = disk_written()
            try:
                res = variant.run()
            finally:
                variant.cleanup()
            res['orphans_reaped'] = reap_orphans()
            after = cpu.snapshot()
            os.sync()
            res['disk_written'] = None if written is None else disk_written() - written
            res['foreign_cpu'] = CpuAccount.foreign(before, after)
            res['cpu_seconds'] = after[1] - before[1]
            res['round'] = index + 1
            res['load1_before'] = load
            res['settle_wait'] = waited
            res['foreign_cores_before'] = quiet
            runs[variant.key].append(res)
            log('  round %d/%d  %-30s %7.2f s  cpu %6.2f s  rss %-9s  load %.2f  foreign cpu %.2f s  written %s' % (
                index + 1, rounds, variant.label, res['seconds'], res['cpu_seconds'], fmt_bytes(res.get('module_peak_rss')), load,
                res['foreign_cpu'], fmt_bytes(res['disk_written'])))
    return runs


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs, fields=('seconds',)):
    """{key: {field: median}} plus min/max of seconds."""
    out = {}
    for key, items in runs.items():
        entry = {field: median([r.get(field) for r in items]) for field in fields}
        secs = [r['seconds'] for r in items]
        entry['min_seconds'] = min(secs)
        entry['max_seconds'] = max(secs)
        entry['n'] = len(items)
        out[key] = entry
    return out


def ratio(num, den):
    if num is None or den in (None, 0):
        return None
    return num / den


# -- formatting and results -------------------------------------------------------------------------------------
def fmt_bytes(value):
    if value is None:
        return '-'
    if value >= 1024 * MIB:
        return '%.2f GiB' % (value / 1024 / MIB)
    return '%.1f MiB' % (value / MIB)


def fmt_num(value, pattern='%.2f'):
    return '-' if value is None else pattern % value


def markdown_table(header, rows):
    header = [str(c).replace('|', '\\|') for c in header]
    rows = [[str(c).replace('|', '\\|') for c in row] for row in rows]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(' --- ' for _col in header) + '|']
    lines.extend('| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows)
    return '\n'.join(lines)


def _first_line(argv):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else None


def machine_facts(extra=None):
    meminfo = dict(line.split(':', 1) for line in (_read('/proc/meminfo') or b'').decode().splitlines() if ':' in line)
    cpu = [line.split(':', 1)[1].strip() for line in (_read('/proc/cpuinfo') or b'').decode().splitlines()
           if line.startswith('model name')]
    facts = {
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'nproc': os.cpu_count(),
        'affinity_cpus': cores(),
        'cpu_model': cpu[0] if cpu else None,
        'mem_total_bytes': int(meminfo.get('MemTotal', '0 kB').split()[0]) * 1024,
        'mem_available_bytes': int(meminfo.get('MemAvailable', '0 kB').split()[0]) * 1024,
        'loadavg': list(os.getloadavg()),
        'kernel': platform.release(),
        'python': platform.python_version(),
        'zstd': (_first_line(['zstd', '--version']) or '').replace('*', '').strip() or None,
        'gzip': _first_line(['gzip', '--version']),
        'pigz': shutil.which('pigz'),
        'ansible_core': _first_line([str(Path(sys.executable).parent / 'ansible'), '--version']),
        'git_commit': _first_line(['git', '-C', str(REPO), 'rev-parse', 'HEAD']),
        'git_dirty': bool(_first_line(['git', '-C', str(REPO), 'status', '--porcelain', '--untracked-files=no'])),
    }
    facts.update(extra or {})
    return facts


def write_results(out_dir, scenario, payload, table_md, stamp=None):
    """Write <scenario>-<stamp>.json and .md, and refresh <scenario>-latest.{json,md}; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = stamp or datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')
    paths = []
    for name in ('%s-%s' % (scenario, stamp), '%s-latest' % scenario):
        json_path = out_dir / (name + '.json')
        json_path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + '\n')
        md_path = out_dir / (name + '.md')
        md_path.write_text(table_md + '\n')
        paths += [json_path, md_path]
    return paths
