"""S4 of the suite: a migration between two podman test hosts over real SSH (benchmarks/README.md, "S4").

The hosts are containers of the molecule scenarios' image (``tests/setup/images.sh bookworm``) on a podman network
made for this run, sshd published on a loopback port, PostgreSQL started inside as those scenarios do.  The source
gets the suite's generated database (``pgdata``, dumped from the local bench server into the host) and its mixed
storage tree; the target the same application without data (an empty database, an empty application directory).
Three variants, interleaved, each from a clean target and each checked afterwards (row counts, file count and
bytes on the target equal the source's):

* ours: ``playbooks/migrate.yml`` (backup on the source, ``backup_send`` host to host, restore, verify);
* hand: ``ssh src 'pg_dump | zstd' | ssh tgt 'zstd -d > file && pg_restore -j2'`` and ``tar | zstd`` the same way;
* community: ``postgresql_db`` dump, ``fetch`` to the controller, ``copy`` to the target, ``postgresql_db`` restore;
  ``community.general.archive`` + fetch + copy + ``unarchive`` for the files.

Bytes through the controller are counted on the run's podman bridge device: its rx/tx counters see only the
traffic between this machine and the containers, not what the containers send each other across the bridge.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import lib
import pgdata

APP_ROOT = '/srv/benchapp'
BACKUP_DIR = '/var/backups/appvault'
SCRATCH = '/var/tmp/appvault-bench'
DB_USER = 'appbench'
TRANSFER_TASKS = ('Transfer - send the archive host to host', 'Transfer - wait for it')  # started async, then waited for
# ours' jobs (the tasks that wait for them), for the busy cores during each (lib.BusyTimeline)
JOB_TASKS = {'Dump and archive, showing progress': "the source's backup job",
             'Verify the archive, restore its paths and databases, showing progress': "the target's restore job",
             "Target - compare the target with the source's manifest": 'the comparison job'}
SSH_OPTIONS = ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR',
               '-o', 'BatchMode=yes']


def podman(*argv, stdin=None, env=None):
    proc = subprocess.run(['podman'] + list(argv), input=stdin, capture_output=True, env=env, check=False)
    if proc.returncode:
        raise RuntimeError('podman %s failed (%d): %s' % (' '.join(argv[:3]), proc.returncode,
                                                          proc.stderr.decode('utf-8', 'replace')[-2000:]))
    return proc.stdout.decode('utf-8', 'replace')


class Hosts:
    """The source and target containers, their network and the SSH key of this run."""

    def __init__(self, workdir, log):
        self.workdir = Path(workdir)
        self.log = log
        self.run = 'appvault-bench-%s' % secrets.token_hex(4)
        self.key = self.workdir / 'id_ed25519'
        self.password = secrets.token_urlsafe(18)
        self.names = {'src': self.run + '-src', 'tgt': self.run + '-tgt'}
        self.ports = {}
        self.pids = {}
        self.bridge = None
        self.image = None

    def __enter__(self):
        self.image = subprocess.run(['bash', str(lib.REPO / 'tests' / 'setup' / 'images.sh'), 'bookworm'], capture_output=True,
                                    text=True, check=True).stdout.split()[-1]
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', self.run, '-f', str(self.key)], check=True)
        podman('network', 'create', '--disable-dns', self.run)
        lib.become_subreaper(False)  # conmon must not stay our child: interleave() reaps every child after each run
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        finally:
            lib.become_subreaper()
        return self

    def _start(self):
        public = Path(str(self.key) + '.pub').read_text().strip()
        for side, name in self.names.items():
            podman('run', '--detach', '--name', name, '--hostname', side, '--network', self.run, '--publish', '127.0.0.1::22',
                   '--env', 'AUTHORIZED_KEY=%s' % public, self.image, '/bin/sh', '-c',
                   'install -d -m 0700 /root/.ssh /run/sshd && printf "%s\\n" "$AUTHORIZED_KEY" > /root/.ssh/authorized_keys'
                   ' && ssh-keygen -A && exec /usr/sbin/sshd -D -e')
            self.ports[side] = int(podman('port', name, '22/tcp').strip().rsplit(':', 1)[1])
            self.pids[side] = int(podman('inspect', '--format', '{{.State.Pid}}', name).strip())
        self.bridge = json.loads(podman('network', 'inspect', self.run))[0]['network_interface']
        deadline = time.monotonic() + 60
        for side in self.names:
            while subprocess.run(self.ssh(side) + ['true'], capture_output=True, check=False).returncode:
                if time.monotonic() > deadline:
                    raise RuntimeError('sshd in %s does not answer' % self.names[side])
                time.sleep(0.5)
        env = dict(os.environ, APPVAULT_BENCH_PW=self.password)
        sql = ("CREATE ROLE %s LOGIN CREATEDB PASSWORD :'pw';\nCREATE DATABASE %s OWNER %s;\n"
               % (DB_USER, pgdata.DB_NAME, DB_USER)).encode()
        for side in self.names:
            # PostgreSQL started as the molecule scenarios do, the app's role with a password (also in ~/.pgpass for
            # the hand variant, as an operator has it) and the app's empty database.
            self.sh(side, 'set -e; cluster=$(pg_lsclusters --no-header | awk \'NR == 1 {print $1}\');'
                          ' pg_ctlcluster "$cluster" main start;'
                          ' runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d postgres -v pw="$APPVAULT_BENCH_PW";'
                          ' mkdir -p %s; umask 077; printf \'127.0.0.1:*:*:%s:%%s\\n\' "$APPVAULT_BENCH_PW" > /root/.pgpass'
                          % (APP_ROOT, DB_USER),
                    stdin=sql, env=env, extra=['--env', 'APPVAULT_BENCH_PW'])
            self.clean(side)

    def __exit__(self, *exc):
        for name in self.names.values():
            subprocess.run(['podman', 'rm', '--force', '--time', '0', name], capture_output=True, check=False)
        subprocess.run(['podman', 'network', 'rm', '--force', self.run], capture_output=True, check=False)
        return False

    # access -------------------------------------------------------------------------------------------------
    def sh(self, side, script, stdin=None, env=None, extra=()):
        return podman('exec', '-i', *extra, self.names[side], 'bash', '-o', 'pipefail', '-c', script, stdin=stdin, env=env)

    def ssh(self, side):
        return ['ssh', '-i', str(self.key), '-p', str(self.ports[side])] + SSH_OPTIONS + ['root@127.0.0.1']

    def inventory_host(self, side):
        return {'ansible_host': '127.0.0.1', 'ansible_port': self.ports[side], 'ansible_user': 'root',
                'ansible_ssh_private_key_file': str(self.key), 'ansible_python_interpreter': '/usr/bin/python3',
                'ansible_ssh_common_args': ' '.join(SSH_OPTIONS)}

    def bridge_bytes(self):
        """(bytes from the hosts to this machine, bytes from this machine to the hosts) on the run's bridge device.

        The bridge device's counters see what it exchanges with this machine's network stack (controller <-> hosts);
        frames it forwards from one container's port to the other's (host <-> host) do not pass through it.
        """
        stats = Path('/sys/class/net') / self.bridge / 'statistics'
        return tuple(int((stats / name).read_text()) for name in ('rx_bytes', 'tx_bytes'))

    # state ------------------------------------------------------------------------------------------------------
    def clean(self, side):
        """Remove what a migration leaves on a host; on the target also the data: an empty database and directory."""
        script = 'rm -rf %s %s /tmp/x.dump' % (BACKUP_DIR, SCRATCH)
        if side == 'tgt':
            script += (' && rm -rf %s && mkdir -p %s && for db in $(runuser -u postgres -- psql -X -A -t -d postgres'
                       ' -c "SELECT datname FROM pg_database WHERE datname LIKE \'%s%%\'"); do'
                       ' runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE $db WITH (FORCE)"; done'
                       ' && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE %s OWNER %s"'
                       % (APP_ROOT, APP_ROOT, pgdata.DB_NAME, pgdata.DB_NAME, DB_USER))
        self.sh(side, script)

    def state(self, side):
        """Row counts of the tables, number and bytes of the files in the storage tree."""
        counts = ' UNION ALL '.join("SELECT '%s', count(*) FROM %s" % (t, t) for t in sorted(pgdata.TABLES))
        out = self.sh(side, "cd %s; if [ -d storage ]; then find storage -type f -printf '%%s\\n'"
                            " | awk '{n++; s+=$1} END {print \"files|\" n+0; print \"bytes|\" s+0}'; fi;"
                            " runuser -u postgres -- psql -X -A -t -d %s -c \"%s\" 2>/dev/null || true"
                      % (APP_ROOT, pgdata.DB_NAME, counts))
        return dict(line.split('|', 1) for line in out.split() if '|' in line)


def load_source(hosts, suite, storage):
    """The suite's database (dumped from the local bench server) and storage tree into the source host."""
    env = suite.pg.env()
    dump = [suite.pg.bin_dir + '/pg_dump', '-Fc', '-Z0', '--no-owner', '--no-acl']
    restore = ['podman', 'exec', '-i', hosts.names['src'], 'runuser', '-u', 'postgres', '--', 'pg_restore', '--no-owner',
               '--role=%s' % DB_USER, '--exit-on-error', '-d', pgdata.DB_NAME]
    pipe(dump, restore, env)
    hosts.sh('src', 'runuser -u postgres -- psql -X -q -d %s -c "VACUUM (ANALYZE, FREEZE)"' % pgdata.DB_NAME)
    pipe(['tar', '-cf', '-', '-C', str(storage.parent), storage.name],
         ['podman', 'exec', '-i', hosts.names['src'], 'tar', '-xf', '-', '-C', APP_ROOT], None)


def pipe(first, second, env):
    with subprocess.Popen(first, stdout=subprocess.PIPE, env=dict(os.environ, **(env or {}))) as producer:
        consumer = subprocess.run(second, stdin=producer.stdout, capture_output=True, check=False)
        producer.stdout.close()
    if producer.returncode or consumer.returncode:
        raise RuntimeError('loading the source failed: %s | %s: %s' % (first[0], second[-1], consumer.stderr[-2000:]))


# -- the variants ---------------------------------------------------------------------------------------------------
class MigrateBench:
    """The three variants of S4 on one pair of hosts."""

    def __init__(self, hosts, suite_module):
        self.hosts = hosts
        self.suite = suite_module
        self.source_state = hosts.state('src')
        self.app = {'name': 'bench', 'profile': 'generic', 'root': APP_ROOT,
                    'databases': [{'id': 'main', 'engine': 'postgresql', 'name': pgdata.DB_NAME, 'login_host': '127.0.0.1',
                                   'login_user': DB_USER, 'login_password': hosts.password}],
                    'paths': [{'id': 'storage', 'path': 'storage'}]}

    def inventory(self, groups):
        return {'all': {'vars': {'appvault_app': self.app, 'appvault_backup_dir': BACKUP_DIR, 'appvault_migrate_confirm': True},
                        'children': {group: {'hosts': {side: self.hosts.inventory_host(side)}} for group, side in groups.items()}}}

    def timed(self, run):
        """Clean target, ``run()`` under the hosts' memory samplers and the bridge counter, then check the target."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the last run's async module processes may still be exiting
            probes = [lib.TreeSampler(pid, match='AnsiballZ_') for pid in self.hosts.pids.values()]
            for probe in probes:
                probe.sample()
            if not list(modules(probes)):
                break
            time.sleep(0.5)
        for side in ('src', 'tgt'):
            self.hosts.clean(side)
        samplers = {side: lib.TreeSampler(pid, match='AnsiballZ_', interval=0.1, cpu=True) for side, pid in self.hosts.pids.items()}
        for sampler in samplers.values():
            sampler.start()
        busy = lib.BusyTimeline()
        busy.start()
        before = self.hosts.bridge_bytes()
        # CPU during run() alone: this process (the samplers' threads), its waited-for children (ansible-playbook and its
        # workers and ssh; hand's ssh pipes) and the hosts' process trees (what the samplers split, and what they miss)
        times, hosts_before = os.times(), self.hosts_cpu()
        try:
            res = run()
        finally:
            for sampler in samplers.values():
                sampler.stop()
            busy.stop()
            times_after, hosts_after = os.times(), self.hosts_cpu()
        # this machine's busy cores (both hosts share them): over the run, and during each of ours' jobs and outside them
        spans = dict((name, span) for name, span in res.pop('job_spans', {}).items() if span[1] - span[0] >= 1.0)  # not skipped
        res['busy_cores'] = {'run': busy.mean()}
        res['machine_cpu'] = busy.cpu_seconds  # every process here, the samplers' too (harness_cpu)
        for name, span in spans.items():
            res['busy_cores'][JOB_TASKS[name]] = busy.mean([span])
        if spans:
            res['busy_cores']['outside the jobs'] = busy.mean(list(spans.values()), inside=False)
        res['busy_timeline'] = [[round(when - busy.samples[0][0], 1), round(cores, 2)] for when, cores in busy.samples] if busy.samples else []
        # what the hosts' processes spent their CPU on: {side: {what: [user s, kernel s]}} (lib.cpu_category)
        res['host_cpu'] = {side: sampler.cpu for side, sampler in samplers.items()}
        res['controller_cpu'] = (times_after.children_user + times_after.children_system) - (times.children_user + times.children_system)
        res['harness_cpu'] = (times_after.user + times_after.system) - (times.user + times.system)
        res['hosts_cpu'] = hosts_after - hosts_before
        samplers = list(samplers.values())
        after = self.hosts.bridge_bytes()
        res['controller_bytes_in'], res['controller_bytes_out'] = after[0] - before[0], after[1] - before[1]
        res['controller_bytes'] = res['controller_bytes_in'] + res['controller_bytes_out']
        peaks = [s.report()['module_peak_rss'] for s in samplers]
        res['module_peak_rss'] = max([p for p in peaks if p] or [None])
        res['host_modules'] = {}  # the module processes the samplers saw in the hosts: their largest peak RSS (bytes)
        for info in modules(samplers):
            name = info['cmdline'].split('AnsiballZ_', 1)[1].split('.py', 1)[0]
            res['host_modules'][name] = max(res['host_modules'].get(name, 0), info['hwm_kib'] * 1024)
        state = self.hosts.state('tgt')
        if state != self.source_state:
            raise RuntimeError('the target differs from the source after the run: %s != %s' % (state, self.source_state))
        return res

    def hosts_cpu(self):
        """CPU seconds the hosts' process trees have used (their processes and the children they reaped)."""
        return sum(lib.tree_cpu_seconds(pid) for pid in self.hosts.pids.values())

    def playbook(self, path, groups):
        with tempfile.TemporaryDirectory(prefix='appvault-bench-ssh-') as control:
            env = {'ANSIBLE_PIPELINING': 'true', 'ANSIBLE_SSH_CONTROL_PATH_DIR': control, 'ANSIBLE_TIMEOUT': '30'}
            try:
                return self.suite.playbook(path, self.inventory(groups), extra_env=env)
            finally:  # the ControlPersist masters would otherwise outlive the run by 60 s
                for sock in Path(control).iterdir():
                    subprocess.run(['ssh', '-o', 'ControlPath=%s' % sock, '-O', 'exit', 'controlled'], capture_output=True,
                                   check=False)

    def ours(self):
        res = self.playbook(lib.REPO / 'playbooks' / 'migrate.yml', {'appvault_migrate_source': 'src', 'appvault_migrate_target': 'tgt'})
        result = (res['stats'].get('appvault_migrate') or {}).get('tgt') or {}
        res['role_controller_bytes'] = int(result.get('controller_bytes', -1))
        res['transfer_mode'] = result.get('transfer')
        res['archive_size'] = int(result.get('size') or 0)
        res['verified'] = result.get('verified')
        times = lib.task_times(res['plays'])
        res['transfer_streamed'] = result.get('transfer_streamed')
        # streamed by the backup while it wrote the archive, backup_send does not run: no step of its own
        res['transfer_seconds'] = None if res['transfer_streamed'] else sum(times.get(task) or 0 for task in TRANSFER_TASKS) or None
        res['slowest_tasks'] = lib.slowest(times)
        res['job_spans'] = lib.task_spans(res['plays'], JOB_TASKS)
        del res['plays']
        if res['transfer_mode'] != 'direct':
            raise RuntimeError('the migration did not transfer directly: %s' % result.get('transfer_reason'))
        return res

    def hand(self):
        src, tgt = (' '.join(self.hosts.ssh(side)) for side in ('src', 'tgt'))
        login = '-h 127.0.0.1 -U %s' % DB_USER
        script = ("%s 'set -o pipefail; pg_dump %s -Fc -Z0 %s | zstd -q -T2 -3'"
                  " | %s 'set -o pipefail; zstd -q -dc > /tmp/x.dump && pg_restore %s -j2 -d %s /tmp/x.dump && rm -f /tmp/x.dump'"
                  " && %s 'set -o pipefail; tar -cf - -C %s storage | zstd -q -T2 -3'"
                  " | %s 'set -o pipefail; zstd -q -dc | tar -xf - -C %s'") % (
            src, login, pgdata.DB_NAME, tgt, login, pgdata.DB_NAME, src, APP_ROOT, tgt, APP_ROOT)
        return self.suite.bash(script)

    def community(self):
        conn = {'name': pgdata.DB_NAME, 'login_host': '127.0.0.1', 'login_user': DB_USER, 'login_password': self.hosts.password}
        files = ['db.sql.gz', 'files.tar.gz']
        with tempfile.TemporaryDirectory(prefix='appvault-bench-fetch-') as local:
            scratch = {'ansible.builtin.file': {'path': SCRATCH, 'state': 'directory', 'mode': '0700'}}
            plays = [
                {'name': 'Source', 'hosts': 'src', 'gather_facts': False, 'tasks': [
                    scratch,
                    {'community.postgresql.postgresql_db': dict(conn, state='dump', target=SCRATCH + '/db.sql.gz'), 'no_log': True},
                    {'community.general.archive': {'path': APP_ROOT + '/storage', 'dest': SCRATCH + '/files.tar.gz', 'format': 'gz'}},
                    {'ansible.builtin.fetch': {'src': SCRATCH + '/{{ item }}', 'dest': local + '/', 'flat': True}, 'loop': files}]},
                {'name': 'Target', 'hosts': 'tgt', 'gather_facts': False, 'tasks': [
                    scratch,
                    {'ansible.builtin.copy': {'src': local + '/{{ item }}', 'dest': SCRATCH + '/{{ item }}', 'mode': '0600'}, 'loop': files},
                    {'community.postgresql.postgresql_db': dict(conn, state='restore', target=SCRATCH + '/db.sql.gz'), 'no_log': True},
                    {'ansible.builtin.unarchive': {'src': SCRATCH + '/files.tar.gz', 'dest': APP_ROOT, 'remote_src': True}}]}]
            path = Path(local) / 'play.yml'
            path.write_text(json.dumps(plays))
            res = self.playbook(path, {'source': 'src', 'target': 'tgt'})
        del res['plays']
        return res


def modules(samplers):
    """The module processes (python running an AnsiballZ_* file) the samplers have seen."""
    for sampler in samplers:
        for info in sampler.procs.values():
            if 'AnsiballZ_' in info['cmdline'] and info['name'].startswith('python'):
                yield info


def migrate_scenario(suite_module, suite, args, log):
    """S4: {'S4': runs}, facts.  ``suite_module`` is benchmarks/suite.py (its playbook and bash helpers)."""
    if suite.pg is None:
        suite.start_pg()
    storage = suite.mixed_tree(int(args.size_gb * pgdata.GIB))
    with Hosts(suite.scratch('s4-hosts'), log) as hosts:
        log('S4: loading the source host %s' % hosts.names['src'])
        started = time.monotonic()
        load_source(hosts, suite, storage)
        bench = MigrateBench(hosts, suite_module)
        log('S4: source loaded in %.0f s: %s' % (time.monotonic() - started, bench.source_state))
        # The first migration on new containers is 25-40 s slower than the next ones (benchmarks/README.md, S4), and
        # round 1 gave that to whichever variant ran first: one untimed run of ours and of hand first.
        warmup = {}
        for key, run in (('ours', bench.ours), ('hand', bench.hand)):
            os.sync()
            warmup[key] = bench.timed(run)['seconds']
            log('S4: warm-up run of %s, not counted: %.2f s' % (key, warmup[key]))
        cpu = lib.CpuAccount(daemon_pids=lambda: list(hosts.pids.values()))
        runs = lib.interleave([lib.Variant('ours', 'S4 ours migrate role (direct)', lambda: bench.timed(bench.ours)),
                               lib.Variant('hand', 'S4 hand ssh | ssh pipes', lambda: bench.timed(bench.hand)),
                               lib.Variant('community', 'S4 community dump/fetch/copy', lambda: bench.timed(bench.community))],
                              args.pairs, log=log, cpu=cpu, settle=args.settle)
        # Its lower bound (lib.lower_bound, with hand's CPU on both hosts): the backup hashes every file and the whole
        # archive as it writes it, the target the archive on arrival and every file as the restore writes it; the
        # database's rows are read twice for the per-table checksums (recorded by the backup, checked on the target).
        # The migration's own comparison afterwards is not counted, so the bound stays low.
        archive = min(r['archive_size'] for r in runs['ours'])
        suite.hashed['S4'] = 2 * (suite.tree_bytes(storage) + archive)
        suite.verify['S4'] = [dict(r, cpu_seconds=2 * r['cpu_seconds']) for r in suite.verify_cpu('postgresql')]
        facts = {'s4_image': hosts.image, 's4_source': bench.source_state, 's4_warmup_seconds': warmup,
                 's4_host_pg': hosts.sh('src', 'runuser -u postgres -- psql -X -A -t -d postgres -c "SHOW server_version"').strip()}
    shutil.rmtree(suite.out / 's4-hosts', ignore_errors=True)
    return {'S4': runs}, facts


SIDES = {'src': 'source', 'tgt': 'target'}


def cpu_split(runs, shown=6):
    """A line on what ours and hand spent their CPU on: medians over the runs of each (host, what) of ``host_cpu``
    (lib.TreeSampler's split, user and kernel seconds), of what ran on this machine during the run (``controller_cpu``:
    ansible-playbook or the ssh pipes; ``harness_cpu``: the samplers), of what the hosts used that the sampler did not
    see, and of the harness's own work around the run; the ``shown`` largest differences between the two."""
    split = {}
    for key in ('ours', 'hand'):
        items = [r for r in runs.get(key) or [] if r.get('host_cpu')]
        if not items:
            return ''
        names = sorted({(side, what) for r in items for side, cats in r['host_cpu'].items() for what in cats})
        table = {}
        for side, what in names:
            spent = [r['host_cpu'].get(side, {}).get(what, [0.0, 0.0]) for r in items]
            table['%s %s' % (SIDES.get(side, side), what)] = (lib.median([u + k for u, k in spent]), lib.median([k for _u, k in spent]))
        seen = [sum(u + k for cats in r['host_cpu'].values() for u, k in cats.values()) for r in items]
        if all('controller_cpu' in r for r in items):
            table['this machine: ansible-playbook, ssh (hand: the pipes\' ssh)'] = (lib.median([r['controller_cpu'] for r in items]), None)
            table['this machine: the harness\'s samplers'] = (lib.median([r['harness_cpu'] for r in items]), None)
            # processes that lived less than the sampler's 0.1 s (and the last < 0.1 s of each other one)
            table['hosts: not seen by the sampler'] = (lib.median([r['hosts_cpu'] - s for r, s in zip(items, seen)]), None)
            table['the harness\'s clean-up and check before and after'] = (
                lib.median([r['cpu_seconds'] - r['controller_cpu'] - r['harness_cpu'] - r['hosts_cpu'] for r in items]), None)
        else:  # results saved before these were recorded
            table['this machine (ansible-playbook, ssh)'] = (lib.median([r['cpu_seconds'] - s for r, s in zip(items, seen)]), None)
        kernel = lib.median([sum(k for cats in r['host_cpu'].values() for _u, k in cats.values()) for r in items])
        split[key] = (table, lib.median([r['cpu_seconds'] for r in items]), kernel)

    def spent(key, what):
        total, kernel = split[key][0].get(what, (0.0, 0.0))
        return '%.1f' % total + (' (kernel %.1f)' % kernel if kernel else '')

    whats = set(split['ours'][0]) | set(split['hand'][0])
    gaps = sorted(whats, key=lambda w: -abs(split['ours'][0].get(w, (0.0,))[0] - split['hand'][0].get(w, (0.0,))[0]))[:shown]
    return ('S4 CPU (median CPU-s of all processes, the hosts\' split by lib.TreeSampler at 0.1 s): ours %.1f, of it %.1f in '
            'the hosts\' kernel; hand %.1f, kernel %.1f.  Largest differences, ours / hand: %s.' % (
                split['ours'][1], split['ours'][2], split['hand'][1], split['hand'][2],
                '; '.join('%s %s / %s' % (what, spent('ours', what), spent('hand', what)) for what in gaps)))


def busy_text(runs):
    """A line on this machine's busy cores during the runs (lib.BusyTimeline) and what ours' CPU would take if both
    cores were busy all along: a shorter run of the same work is out of reach without less CPU."""
    ours = [r for r in runs.get('ours') or [] if r.get('busy_cores') and 'machine_cpu' in r]
    hand = [r for r in runs.get('hand') or [] if r.get('busy_cores')]
    if not ours or not hand:
        return ''
    names = list(JOB_TASKS.values()) + ['outside the jobs']  # in the order of the run (a result read back has its keys sorted)
    # this machine's busy CPU during run() less the samplers' own
    packed = lib.median([r['machine_cpu'] - r['harness_cpu'] for r in ours]) / lib.cores()
    hand_seconds = lib.median([r['seconds'] for r in hand])
    phases = dict((key, [r['busy_cores'][key] for r in ours if r['busy_cores'].get(key) is not None]) for key in names)
    during = ', '.join('%s %.2f' % (key, lib.median(values)) for key, values in phases.items() if values)
    return ('Busy cores of this machine (both hosts run on it; /proc/stat every 0.5 s, medians): ours %.2f over the run%s, '
            'hand %.2f.  Ours\' CPU (this machine\'s busy CPU-s during the run, less the samplers\') with every core busy '
            'all along would take %.1f s (%.2fx hand): what overlapping the steps could give at most without spending '
            'less CPU.' % (
                lib.median([r['busy_cores']['run'] for r in ours]), ' (%s)' % during if during else '',
                lib.median([r['busy_cores']['run'] for r in hand]), packed, packed / hand_seconds))


def describe(runs):
    """The line under the suite's table about S4: the transfer step, what the role reports, what each variant moved."""
    ours = runs['ours']
    transfer = lib.median([r.get('transfer_seconds') for r in ours])
    role_bytes = lib.median([r.get('role_controller_bytes') for r in ours])
    slowest = lib.slowest_text(ours[-1]['slowest_tasks'])
    archive = lib.median([r.get('archive_size') for r in ours])
    sent = lib.median([r.get('controller_bytes_out') for r in ours])
    calls = lib.median([r.get('module_calls') for r in ours])
    per_call = ('%s per task' % lib.fmt_bytes(sent / calls)) if sent and calls else 'n/a per task'
    streamed = sum(1 for r in ours if r.get('transfer_streamed'))
    if streamed == len(ours):
        step = 'the backup streamed the archive (%s) to the target while writing it in every run (no backup_send step)'
    else:
        step = (('the backup streamed the archive to the target in %d of %d runs; ' % (streamed, len(ours)) if streamed else '')
                + 'the host-to-host transfer step (backup_send, %s of archive) took ' + lib.fmt_num(transfer) + ' s (median)')
    return ('S4: of ours, ' + step % lib.fmt_bytes(archive) + '; the role reports '
            '%s archive bytes through the controller (transfer mode %s).  "through controller" is what the run\'s podman '
            'bridge exchanged with this machine (Ansible\'s own SSH traffic included), median per variant; of ours\', %s '
            'went to the hosts over %s tasks that ran on them (lib.host_tasks: %s, each its module\'s payload).  '
            'Ours\' slowest tasks (last round): %s.' % (
                lib.fmt_num(role_bytes, '%d'),
                ', '.join(sorted({str(r.get('transfer_mode')) for r in ours})), lib.fmt_bytes(sent),
                lib.fmt_num(calls, '%d'), per_call, slowest)) + ''.join('  ' + line for line in [cpu_split(runs), busy_text(runs)] if line)
