"""The whole-operation benchmark: the backup and restore roles (playbooks/backup.yml, restore.yml) side by side.

    make bench                                   # every scenario, 1 GiB, 3 interleaved rounds
    .venv/bin/python benchmarks/run.py --scenario suite --size-gb 0.05 --files 2000 --pairs 3   # a quick look

S1 PostgreSQL backup (database + mixed storage) and S2 its restore, S3 MariaDB backup and restore, S4 a migration
between two podman test hosts (benchmarks/migratebench.py), S5 storage of many small files and a re-sync after 5 %
of them changed, plus the fixed overhead (the backup playbook end to end
on a 10 MB app) and the module calls a backup makes.  Each scenario runs its variants interleaved (A B C A B C ...):
ours (the role through ansible-playbook), hand (the raw tools piped by hand) and community (the community modules'
route).  Prints one table and writes JSON (every run, machine facts) and markdown to --out.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lib
import migratebench
import mysqlbench
import mysqldata
import pgdata
import storagedata

HAND_TARGET = {'S1': 1.10, 'S2': 1.10, 'S3 backup': 1.10, 'S3 restore': 1.10, 'S4': 1.15, 'S5 backup': 1.15, 'S5 re-sync': 1.20}
COMMUNITY_TARGET = {'S1': 3.0, 'S2': 2.0, 'S3 backup': 1.5, 'S3 restore': 1.2, 'S4': 2.0, 'S5 backup': 3.0}
RSS_TARGET = 64 * lib.MIB
CONTROLLER_TARGET = {'S4': 1000 * 1000}  # bytes through the controller, ours
CHANGED_SHARE = 0.05


def log(msg):
    print(msg, flush=True)


def playbook(path, inventory, match='AnsiballZ_', extra_env=None):
    """Run the playbook ``path`` against ``inventory`` (a dict); measure()'s dict plus module calls, stats and plays."""
    with tempfile.TemporaryDirectory(prefix='appvault-bench-inv-') as tmp:
        inventory_path = Path(tmp) / 'inventory.json'
        inventory_path.write_text(json.dumps(inventory))
        inventory_path.chmod(0o600)
        argv = [str(Path(sys.executable).parent / 'ansible-playbook'), '-i', str(inventory_path), str(path)]
        env = lib.ansible_env()
        env['ANSIBLE_SHOW_CUSTOM_STATS'] = 'true'
        env.update(extra_env or {})
        res = lib.measure(argv, env=env, match=match)
    try:
        data = json.loads(res['stdout'][res['stdout'].index('{'):])
    except ValueError:
        data = {}
    calls, failed = 0, []
    for play in data.get('plays', []):
        for task in play.get('tasks', []):
            for result in task.get('hosts', {}).values():
                items = result.get('results') if isinstance(result.get('results'), list) else [result]
                calls += sum(1 for item in items if not item.get('skipped'))
                if result.get('failed') and not result.get('_ansible_ignore_errors'):
                    failed.append('%s: %s' % (task['task']['name'], result.get('msg')))
    if res['rc'] or failed:
        raise RuntimeError('%s failed (rc %s): %s' % (Path(path).name, res['rc'], failed or res['stderr'][-2000:]))
    res['task_results'] = calls
    res['module_calls'] = lib.host_tasks(data.get('plays', []))
    res['stats'] = data.get('global_custom_stats') or data.get('custom_stats') or {}
    res['plays'] = data.get('plays', [])
    del res['stdout']
    return res


def role_playbook(name, host_vars, match='AnsiballZ_'):
    """Run playbooks/<name> on localhost with ``host_vars``; playbook()'s dict without the plays."""
    inventory = {'all': {'children': {'appvault': {'hosts': {'localhost': dict(
        {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}, **host_vars)}}}}}
    res = playbook(lib.REPO / 'playbooks' / name, inventory, match=match)
    res['slowest_tasks'] = lib.slowest(lib.task_times(res.pop('plays')))
    return res


def bash(script, env=None):
    res = lib.measure(['bash', '-o', 'pipefail', '-c', script], env=dict(os.environ, **(env or {})))
    if res['rc']:
        raise RuntimeError('hand pipeline failed: %s\n%s' % (script, res['stderr'][-2000:]))
    res['commands'] = [script]
    del res['stdout']
    return res


def community_playbook(tasks, match):
    res = lib.run_playbook(tasks, match=match)
    bulky = ('archived', 'expanded_paths', 'expanded_exclude_paths', 'executed_commands', 'files')
    res['results'] = [{k: v for k, v in r.items() if k not in bulky} for r in res['results']]
    return res


class Suite:
    """The servers, trees and scratch directories of one suite run."""

    def __init__(self, args):
        self.args = args
        self.data = Path(args.data_dir).resolve()
        self.out = self.data / ('suite-out-%d' % os.getpid())
        self.pg = None
        self.my = None
        self.generated = []
        self.hashed = {}  # scenario -> bytes its archive format makes ours hash (for lib.lower_bound)
        self.verify = {}  # scenario -> runs of the per-table checksums that ours computes and hand does not

    def __enter__(self):
        self.out.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.out, ignore_errors=True)
        for server in (self.pg, self.my):
            if server:
                server.stop(remove=not self.args.keep_data)
        if not self.args.keep_data:
            for tree in self.generated:
                shutil.rmtree(tree, ignore_errors=True)
        return False

    @staticmethod
    def tree_bytes(storage):
        """Bytes in the files of a generated tree, as storagedata recorded them in its meta.json."""
        return json.loads((storage.parent / 'meta.json').read_text())['bytes']

    def path(self, *parts):
        path = self.out.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def scratch(self, name):
        path = self.out / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    # data -------------------------------------------------------------------------------------------------------
    # A server started while this process is the subreaper (a part that ran before turned it on) would become its
    # child, and every run's reap_orphans() would wait its full timeout for it: off while a server starts.
    def start_pg(self):
        lib.become_subreaper(False)
        self.pg = pgdata.BenchServer(self.data / ('pg-seed%s-%sgb' % (self.args.seed, self.args.size_gb)), self.args.seed,
                                     self.args.size_gb, log=log).start()
        lib.become_subreaper()  # after the server started: the postmaster must not become our child

    def start_my(self):
        lib.become_subreaper(False)
        self.my = mysqldata.BenchServer(self.data / ('my-seed%s-%sgb' % (self.args.seed, self.args.size_gb)), self.args.seed,
                                        self.args.size_gb, log=log)
        self.my.start()
        lib.become_subreaper()

    def cpu_account(self):
        """Each run's CPU seconds count the database servers' process trees too: a restore's COPY and index builds run
        in the server, and are work ours must cause as much as hand (lib.lower_bound uses hand's)."""
        return lib.CpuAccount(lambda: [pid for pid in ((self.pg and self.pg.postmaster_pid()), (self.my and self.my.pid()))
                                       if pid])

    def mixed_tree(self, size):
        tree = self.data / ('storage-mixed-%s-%d' % (self.args.seed, size))
        storagedata.generate_mixed(tree, size, self.args.seed, log=log)
        self.generated.append(tree)
        return tree / 'storage'

    def small_tree(self, count):
        tree = self.data / ('storage-small-%s-%d' % (self.args.seed, count))
        storagedata.generate_small(tree, count, self.args.seed, log=log)
        self.generated.append(tree)
        return tree / 'storage'

    def verify_cpu(self, engine, rounds=3):
        """Runs of the object inventory with per-table checksums of the benchmark's source database, read once:
        what a backup records and what a restore must check the restored database against (it fails when they
        differ), both on by default (appvault_backup_checksums, appvault_restore_checksums) and so in the suite; hand
        does no such check.  Our module_utils run it in-process, ``rounds`` times; each run counts this process and
        the database server's tree (cpu_account), so lib.lower_bound can take the smallest.  It reads the source, not
        a restored copy: on PostgreSQL the first read of a freshly restored table also writes its hint bits, which
        the source's pages (frozen when generated) do not."""
        mysqlbench._collection()  # build/collections on sys.path
        from ansible_collections.appvault.backup.plugins.module_utils import _common, _mysql, _postgres
        module, db = (_postgres, self.pg_db()) if engine == 'postgresql' else (_mysql, self.my_db())
        params = module.connection_argument_spec_defaults()
        params.update((key, value) for key, value in db.items() if key.startswith('login_'))
        params['name'] = db['name']
        account = self.cpu_account()
        runs = []
        with _common.SecretDir() as secrets:
            conn = module.Connection(params, secrets)
            conn.connect()
            for _round in range(rounds):
                before, started = account.snapshot(), time.monotonic()
                found = module.inventory(conn, db['name'], checksums=True)
                after = account.snapshot()
                runs.append({'seconds': time.monotonic() - started, 'cpu_seconds': after[1] - before[1],
                             'tables': len(found.get('checksums') or {})})
        log('per-table checksums of the %s source database: %s CPU s'
            % (engine, ', '.join('%.2f' % r['cpu_seconds'] for r in runs)))
        return runs

    # app definitions ----------------------------------------------------------------------------------------------
    def pg_db(self, name=pgdata.DB_NAME):
        return {'id': 'main', 'engine': 'postgresql', 'name': name, 'login_host': '127.0.0.1', 'login_port': self.pg.port,
                'login_user': pgdata.SUPERUSER, 'login_password': self.pg.password}

    def my_db(self, name=mysqldata.DB_NAME):
        return {'id': 'main', 'engine': 'mariadb', 'name': name, 'login_host': '127.0.0.1', 'login_port': self.my.port,
                'login_user': mysqlbench.SUPERUSER, 'login_password': self.my.password}

    @staticmethod
    def app(root, databases, paths):
        return {'name': 'bench', 'profile': 'generic', 'root': str(root), 'databases': databases,
                'paths': [{'id': ident, 'path': str(path)} for ident, path in paths]}

    def backup(self, backup_dir, app):
        res = role_playbook('backup.yml', {'appvault_backup_dir': str(backup_dir), 'appvault_app': app, 'appvault_backup_keep': 100})
        summary = (res['stats'].get('appvault_backup') or {}).get('localhost') or {}
        res['output_size'] = int(summary.get('size') or 0)
        res['backup_name'] = summary.get('name')
        return res

    def restore(self, backup_dir, app, name):
        return role_playbook('restore.yml', {'appvault_backup_dir': str(backup_dir), 'appvault_app': app,
                                             'appvault_restore_backup': name, 'appvault_restore_confirm': True,
                                             'appvault_restore_keep_previous': 1})


# -- S1 / S2: PostgreSQL ------------------------------------------------------------------------------------------------
def pg_scenarios(suite, args):
    suite.start_pg()
    storage = suite.mixed_tree(int(args.size_gb * storagedata.GIB))
    root = storage.parent
    pg_dump = suite.pg.bin_dir + '/pg_dump'
    pg_restore = suite.pg.bin_dir + '/pg_restore'
    env = suite.pg.env()
    app = suite.app(root, [suite.pg_db()], [('storage', storage)])

    def ours_backup():
        return suite.backup(suite.scratch('s1-ours'), app)

    def hand_backup():
        out = suite.scratch('s1-hand')
        return bash('%s -Fc -Z0 | zstd -q -T2 -3 > %s/db.pgc.zst && tar -cf - -C %s storage | zstd -q -T2 -3 > %s/files.tar.zst'
                    % (pg_dump, out, root, out), env)

    def community_backup():
        out = suite.scratch('s1-community')
        conn = {'name': pgdata.DB_NAME, 'login_host': '127.0.0.1', 'login_port': suite.pg.port, 'login_user': pgdata.SUPERUSER,
                'login_password': suite.pg.password}
        return community_playbook([
            {'community.postgresql.postgresql_db': dict(conn, state='dump', target=str(out / 'db.sql.gz'))},
            {'community.general.archive': {'path': str(storage), 'dest': str(out / 'files.tar.gz'), 'format': 'gz'}}],
            match='AnsiballZ_')

    s1 = lib.interleave([lib.Variant('ours', 'S1 ours backup role', ours_backup),
                         lib.Variant('hand', 'S1 hand pg_dump|zstd; tar|zstd', hand_backup),
                         lib.Variant('community', 'S1 community db dump + archive', community_backup)],
                        args.pairs, log=log, cpu=suite.cpu_account(), settle=args.settle)

    # S2 restores what S1 wrote last (all three are kept from the last round) into a second database and directory.
    target_root = suite.out / 's2-target'
    target_db = 'restoredb'

    def fresh_target():
        suite.pg.psql('DROP DATABASE IF EXISTS %s WITH (FORCE)' % target_db, 'postgres')
        suite.pg.psql('CREATE DATABASE %s' % target_db, 'postgres')
        if target_root.exists():
            shutil.rmtree(target_root)
        (target_root / 'storage').mkdir(parents=True)

    backup_name = s1['ours'][-1]['backup_name']
    target_app = suite.app(target_root, [suite.pg_db(target_db)], [('storage', target_root / 'storage')])
    raw = suite.path('s1-hand', 'db.pgc')
    subprocess.run(['zstd', '-q', '-d', '-f', str(raw) + '.zst', '-o', str(raw)], check=True)

    def ours_restore():
        fresh_target()
        return suite.restore(suite.out / 's1-ours', target_app, backup_name)

    def hand_restore():
        fresh_target()
        return bash('%s -j2 -d %s %s && zstd -dc %s | tar -xf - -C %s' % (
            pg_restore, target_db, raw, suite.path('s1-hand', 'files.tar.zst'), target_root), env)

    def community_restore():
        fresh_target()
        conn = {'name': target_db, 'login_host': '127.0.0.1', 'login_port': suite.pg.port, 'login_user': pgdata.SUPERUSER,
                'login_password': suite.pg.password}
        return community_playbook([
            {'community.postgresql.postgresql_db': dict(conn, state='restore', target=str(suite.path('s1-community', 'db.sql.gz')))},
            {'ansible.builtin.unarchive': {'src': str(suite.path('s1-community', 'files.tar.gz')), 'dest': str(target_root),
                                           'remote_src': True}}], match='AnsiballZ_')

    s2 = lib.interleave([lib.Variant('ours', 'S2 ours restore role', ours_restore),
                         lib.Variant('hand', 'S2 hand pg_restore -j2; tar -x', hand_restore),
                         lib.Variant('community', 'S2 community restore + unarchive', community_restore)],
                        args.pairs, log=log, cpu=suite.cpu_account(), settle=args.settle)
    suite.pg.psql('DROP DATABASE IF EXISTS %s WITH (FORCE)' % target_db, 'postgres')
    # The backup hashes every file of the storage (a member each) and the whole archive; the restore checks both.
    archive = min(r['output_size'] for r in s1['ours'])
    suite.hashed['S1'] = suite.hashed['S2'] = suite.tree_bytes(storage) + archive
    suite.verify['S1'] = suite.verify['S2'] = suite.verify_cpu('postgresql')
    facts = {'pg_version': suite.pg.version(), 'pg_database_bytes': suite.pg.database_size(),
             'storage': json.loads((root / 'meta.json').read_text()) if (root / 'meta.json').exists() else None}
    return {'S1': s1, 'S2': s2}, facts


# -- S3: MariaDB -------------------------------------------------------------------------------------------------------
def mysql_scenarios(suite, args):
    suite.start_my()
    root = suite.scratch('s3-root')
    client = ' '.join(suite.my.client_argv(mysqlbench.DUMP))
    app = suite.app(root, [suite.my_db()], [])

    def ours_backup():
        return suite.backup(suite.scratch('s3-ours'), app)

    def hand_backup():
        out = suite.scratch('s3-hand')
        return bash('%s %s %s | zstd -q -T2 -3 > %s/db.sql.zst' % (client, ' '.join(mysqlbench.DUMP_FLAGS), mysqldata.DB_NAME, out))

    def community_backup():
        out = suite.scratch('s3-community')
        task = dict(conn(suite), state='dump', target=str(out / 'db.sql.gz'), single_transaction=True, skip_lock_tables=True,
                    hex_blob=True, encoding='utf8mb4', dump_extra_args='--routines --triggers --events')
        return community_playbook([{'community.mysql.mysql_db': task}], match='AnsiballZ_')

    dump = lib.interleave([lib.Variant('ours', 'S3 ours backup role', ours_backup),
                           lib.Variant('hand', 'S3 hand mariadb-dump|zstd', hand_backup),
                           lib.Variant('community', 'S3 community mysql_db dump', community_backup)],
                          args.pairs, log=log, cpu=suite.cpu_account(), settle=args.settle)
    backup_name = dump['ours'][-1]['backup_name']
    target = 'restoredb'
    target_app = suite.app(root, [suite.my_db(target)], [])

    def fresh_target():
        suite.my.sql('DROP DATABASE IF EXISTS `%s`' % target)
        suite.my.sql('CREATE DATABASE `%s` CHARACTER SET utf8mb4' % target)

    def ours_restore():
        fresh_target()
        return suite.restore(suite.out / 's3-ours', target_app, backup_name)

    def hand_restore():
        fresh_target()
        return bash('zstd -dc %s | %s %s' % (suite.path('s3-hand', 'db.sql.zst'), ' '.join(suite.my.client_argv()), target))

    def community_restore():
        fresh_target()
        task = dict(conn(suite, target), state='import', target=str(suite.path('s3-community', 'db.sql.gz')))
        return community_playbook([{'community.mysql.mysql_db': task}], match='AnsiballZ_')

    restore = lib.interleave([lib.Variant('ours', 'S3 ours restore role', ours_restore),
                              lib.Variant('hand', 'S3 hand zstd -dc|mariadb', hand_restore),
                              lib.Variant('community', 'S3 community mysql_db import', community_restore)],
                             args.pairs, log=log, cpu=suite.cpu_account(), settle=args.settle)
    suite.my.sql('DROP DATABASE IF EXISTS `%s`' % target)
    suite.hashed['S3 backup'] = suite.hashed['S3 restore'] = min(r['output_size'] for r in dump['ours'])  # the whole archive
    suite.verify['S3 backup'] = suite.verify['S3 restore'] = suite.verify_cpu('mysql')
    return {'S3 backup': dump, 'S3 restore': restore}, {'mariadb_version': suite.my.version()}


def conn(suite, name=mysqldata.DB_NAME):
    return {'name': name, 'login_host': '127.0.0.1', 'login_port': suite.my.port, 'login_user': mysqlbench.SUPERUSER,
            'login_password': suite.my.password}


# -- S5: many small files ---------------------------------------------------------------------------------------------
def change_files(storage, share, seed):
    """Rewrite ``share`` of the files (same size, new bytes), chosen from ``seed``; returns how many."""
    files = sorted(str(p) for p in storage.rglob('*') if p.is_file() and not p.is_symlink())
    rng = random.Random(seed)
    chosen = rng.sample(files, max(1, int(len(files) * share)))
    for name in chosen:
        size = os.path.getsize(name)
        with open(name, 'wb') as fileobj:
            fileobj.write(rng.randbytes(size))
    return len(chosen)


def small_scenarios(suite, args):
    storage = suite.small_tree(args.files)
    root = storage.parent
    app = suite.app(root, [], [('storage', storage)])
    mirror = suite.out / 's5-mirror'

    def ours_backup():
        return suite.backup(suite.scratch('s5-ours'), app)

    def hand_backup():
        out = suite.scratch('s5-hand')
        return bash('tar -cf - -C %s storage | zstd -q -T2 -3 > %s/files.tar.zst' % (root, out))

    def community_backup():
        out = suite.scratch('s5-community')
        return community_playbook([{'community.general.archive': {'path': str(storage), 'dest': str(out / 'files.tar.gz'),
                                                                  'format': 'gz'}}], match='AnsiballZ_')

    backup = lib.interleave([lib.Variant('ours', 'S5 ours backup role', ours_backup),
                             lib.Variant('hand', 'S5 hand tar|zstd', hand_backup),
                             lib.Variant('community', 'S5 community archive', community_backup)],
                            args.pairs, log=log, cpu=suite.cpu_account(), settle=args.settle)
    # Re-sync: 5 % of the files change, then ours takes a new backup (a full archive: the format has no increments)
    # and the baseline brings a mirror made before the change up to date with rsync -a -W.
    bash('rsync -a -W --delete %s/ %s/' % (storage, mirror))
    changed = {'n': 0}

    def change():
        changed['n'] = change_files(storage, CHANGED_SHARE, '%s-%d' % (args.seed, len(resync_runs['ours'])))

    resync_runs = {'ours': [], 'hand': []}
    for index in range(args.pairs):
        change()
        for key, label, run in (('ours', 'S5 ours re-sync: a new backup', ours_backup),
                                ('hand', 'S5 hand rsync -a -W of the change', lambda: bash('rsync -a -W --delete %s/ %s/' % (storage, mirror)))):
            res = run()
            res['changed_files'] = changed['n']
            res['round'] = index + 1
            resync_runs[key].append(res)
            log('  round %d/%d  %-30s %7.2f s' % (index + 1, args.pairs, label, res['seconds']))
    if not args.keep_data:
        suite.generated.append(root)
    suite.hashed['S5 backup'] = suite.tree_bytes(storage) + min(r['output_size'] for r in backup['ours'])
    suite.hashed['S5 re-sync'] = 0  # an incremental format need not hash what did not change: Ansible's cost only
    return {'S5 backup': backup, 'S5 re-sync': resync_runs}, {'files': args.files}


# -- fixed overhead --------------------------------------------------------------------------------------------------
def overhead(suite, args):
    """The backup playbook end to end on a 10 MB app (a small database and storage), and its module calls."""
    suite.pg.psql('DROP DATABASE IF EXISTS tinydb', 'postgres')
    suite.pg.psql('CREATE DATABASE tinydb', 'postgres')
    suite.pg.psql("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 40000) g", 'tinydb')
    storage = suite.mixed_tree(8 * storagedata.MIB)
    app = suite.app(storage.parent, [suite.pg_db('tinydb')], [('storage', storage)])
    runs = lib.interleave([lib.Variant('ours', 'tiny app: backup playbook', lambda: suite.backup(suite.scratch('tiny'), app)),
                           lib.Variant('noop', 'ansible-playbook, one ping', lib.noop_playbook)],
                          args.pairs, log=log, cpu=suite.cpu_account(), settle=args.settle)
    suite.pg.psql('DROP DATABASE IF EXISTS tinydb', 'postgres')
    return runs


# -- report ------------------------------------------------------------------------------------------------------------
BOUND_NOTE = ('Lower bound: no implementation of ours can be faster here (lib.lower_bound). Ours runs the same tools on '
              'the same data as hand, so it spends at least hand\'s CPU seconds (the database server\'s included: the '
              'same COPY, the same index builds), must sha256 what the archive format covers (every file and the whole '
              'archive), must read every row of the database once for the per-table checksums that a backup records '
              'and a restore checks the restored database against (the roles\' defaults; %s), and does all that inside '
              'a module that ansible-playbook starts, so after Ansible\'s cheapest run (one ping task: %s s) and not '
              'beside it. With sha256 at %.2f CPU s/GiB and %d cores, bound = that run + all that CPU / cores. The '
              're-sync\'s bound counts Ansible only; S4\'s counts the work of both hosts, which share this machine\'s '
              'cores as hand\'s pipes do (the archive and every file hashed on each side, the checksums read on each). '
              'Where the bound is above a target, the target is out of reach on this machine.')


def checks_text(verify):
    """The per-table checksums' part of the bound note: the smallest CPU seconds measured, per scenario group."""
    groups = {}
    for name, runs in sorted(verify.items()):
        groups.setdefault(min(r['cpu_seconds'] for r in runs), []).append(name + (' (twice: read on both hosts)' if name == 'S4' else ''))
    parts = ['%s %.2f CPU s' % (' and '.join(names), cpu) for cpu, names in groups.items()]
    return ('our inventory with checksums on the source database, the smallest of three in-process runs, server '
            'included: %s' % '; '.join(parts)) if parts else 'not measured in this run'


def row(name, runs, bound=None):
    summary = lib.summarize(runs, fields=('seconds', 'module_peak_rss', 'controller_bytes', 'disk_written'))
    ours, hand = summary['ours']['seconds'], summary['hand']['seconds']
    community = summary.get('community', {}).get('seconds')
    vs_hand = lib.ratio(ours, hand)
    faster = lib.ratio(community, ours)
    floor, floor_text, floor_ratio = None, '-', '-'
    if bound and hand:
        floor = bound['seconds'] / hand
        floor_ratio = '%.2fx' % floor
        floor_text = '%.2f s (%s)' % (bound['seconds'], floor_ratio)
    verdict = []
    if name in HAND_TARGET:
        met = vs_hand is not None and vs_hand <= HAND_TARGET[name]
        beyond = not met and floor is not None and floor > HAND_TARGET[name]
        suffix = ', out of reach here (bound %s)' % floor_ratio if beyond else ''
        verdict.append('hand %s (≤%.2fx)%s' % ('met' if met else 'MISSED', HAND_TARGET[name], suffix))
    if name in COMMUNITY_TARGET and faster is not None:
        verdict.append('community %s (≥%.1fx)' % ('met' if faster >= COMMUNITY_TARGET[name] else 'MISSED', COMMUNITY_TARGET[name]))
    rss = summary['ours']['module_peak_rss']
    if rss is not None:
        verdict.append('RSS %s' % ('met' if rss <= RSS_TARGET else 'MISSED'))
    # every variant of S1-S3 and S5 runs on localhost: nothing passes through a controller; S4 measures it
    through = '0 B'
    if summary['ours']['controller_bytes'] is not None:
        through = ' / '.join('%s %s' % (key, fmt_size(summary[key]['controller_bytes'])) for key in summary)
    if name in CONTROLLER_TARGET and summary['ours']['controller_bytes'] is not None:
        verdict.append('controller %s (≤%s)' % ('met' if summary['ours']['controller_bytes'] <= CONTROLLER_TARGET[name] else 'MISSED',
                                                fmt_size(CONTROLLER_TARGET[name])))
    if bound:
        summary['lower_bound'] = bound
    return [name, lib.fmt_num(ours), lib.fmt_num(hand), lib.fmt_num(community), lib.fmt_num(vs_hand, '%.2fx'),
            lib.fmt_num(faster, '%.2fx'), floor_text, lib.fmt_bytes(rss), through, '; '.join(verdict)], summary


def fmt_size(value):
    """Bytes in decimal units (the controller target is 1 MB)."""
    for unit, size in (('GB', 1e9), ('MB', 1e6), ('kB', 1e3)):
        if value >= size:
            return '%.2f %s' % (value / size, unit)
    return '%d B' % value


def scenario_suite(args):
    payload = {'scenarios': {}, 'summary': {}}
    rows = []
    with Suite(args) as suite:
        # how fast new bytes go into memory and to the disk, before and after (see disk_note)
        facts = {'write_probe_before': lib.write_probe(suite.out)}
        groups = []
        if 'pg' in args.parts:
            runs, more = pg_scenarios(suite, args)
            facts.update(more)
            groups.append(runs)
            tiny = overhead(suite, args)
            payload['overhead'] = {'runs': tiny, 'summary': lib.summarize(tiny),
                                   'module_calls': tiny['ours'][-1]['module_calls']}
        if 'mysql' in args.parts:
            runs, more = mysql_scenarios(suite, args)
            facts.update(more)
            groups.append(runs)
        if 'small' in args.parts:
            runs, more = small_scenarios(suite, args)
            facts.update(more)
            groups.append(runs)
        if 'migrate' in args.parts:
            runs, more = migratebench.migrate_scenario(sys.modules[__name__], suite, args, log)
            facts.update(more)
            groups.append(runs)
        noop, sha = None, None
        if suite.hashed:
            # Ansible's cheapest run (measured with the overhead when that ran) and this machine's sha256 speed: the
            # parts of each scenario's lower bound
            if 'overhead' in payload:
                noop = payload['overhead']['runs']['noop']
            else:
                noop = lib.interleave([lib.Variant('noop', 'ansible-playbook, one ping', lib.noop_playbook)], args.pairs,
                                      log=log, settle=args.settle)['noop']
            sha = lib.sha256_cpu_per_gib()
            payload['lower_bound_parts'] = {'noop': noop, 'sha256_cpu_per_gib': sha, 'verify': suite.verify}
        for runs in groups:
            for name, scenario_runs in runs.items():
                bound = None
                if name in suite.hashed:
                    checks = min(r['cpu_seconds'] for r in suite.verify[name]) if name in suite.verify else 0.0
                    bound = lib.lower_bound(scenario_runs['hand'], noop, suite.hashed[name], sha,
                                            hand_cpu=name != 'S5 re-sync', verify_cpu=checks)
                line, summary = row(name, scenario_runs, bound)
                rows.append(line)
                payload['scenarios'][name] = scenario_runs
                payload['summary'][name] = summary
        facts['write_probe_after'] = lib.write_probe(suite.out)
        payload['facts'] = lib.machine_facts(dict(facts, size_gb=args.size_gb, pairs=args.pairs, seed=args.seed))
    header = ['scenario', 'ours s', 'hand s', 'community s', 'ours/hand', 'community/ours', 'lower bound (/hand)',
              'module peak RSS', 'through controller', 'targets']
    md = [lib.markdown_table(header, rows), '']
    if 'lower_bound_parts' in payload:
        parts = payload['lower_bound_parts']
        md.append(BOUND_NOTE % (checks_text(parts['verify']), lib.fmt_num(min(r['seconds'] for r in parts['noop'])),
                                parts['sha256_cpu_per_gib'], lib.cores()))
    if 'overhead' in payload:
        tiny = payload['overhead']['summary']
        md.append('Fixed overhead: the backup playbook on a 10 MB app takes %s s (an ansible-playbook with one ping: %s s); '
                  'one backup makes %d module calls on the host.' % (lib.fmt_num(tiny['ours']['seconds']),
                                                                     lib.fmt_num(tiny['noop']['seconds']), payload['overhead']['module_calls']))
    slow = ['%s: %s' % (name, lib.slowest_text(runs['ours'][-1]['slowest_tasks']))
            for name, runs in payload['scenarios'].items() if name != 'S4' and runs['ours'][-1].get('slowest_tasks')]
    if slow:
        md.append('Ours\' slowest tasks (last round) - %s.' % '; '.join(slow))
    if 'S4' in payload['scenarios']:
        md.append(migratebench.describe(payload['scenarios']['S4']))
    md.append(disk_note(payload))
    md.append('Medians of %d interleaved rounds; %s GiB database and storage%s; machine: %s.' % (
        args.pairs, args.size_gb, ', %d small files' % args.files if 'small' in args.parts else '',
        lib.fmt_bytes(payload['facts'].get('mem_total_bytes'))))
    text = '\n'.join(md)
    log(text)
    for line in (payload['scenarios'].get('S5 re-sync') or {}).get('ours', [])[:1]:
        log('re-sync: %d files changed per round' % line['changed_files'])
    return strip(payload), text


def disk_note(payload):
    """What each variant wrote to this machine's disk (median per run), and the write probes before and after."""
    written = []
    for name, summary in payload['summary'].items():
        variants = ['%s %s' % (key, fmt_size(entry['disk_written'])) for key, entry in summary.items()
                    if isinstance(entry, dict) and entry.get('disk_written') is not None]
        written.append('%s %s' % (name, ' / '.join(variants)))
    before, after = payload['facts']['write_probe_before'], payload['facts']['write_probe_after']
    return ('Written to this machine\'s disk per run (median; every writer, servers and test hosts included): %s.  Writing %s '
            'into a new file took %.2f s before the suite and %.2f s after it, its fsync %.2f and %.2f s (new file data '
            'is slow to write here after a pause, see benchmarks/README.md, "Method").' % (
                '; '.join(written) or '-', lib.fmt_bytes(before['bytes']), before['write_seconds'], after['write_seconds'],
                before['fsync_seconds'], after['fsync_seconds']))


def strip(payload):
    for runs in payload['scenarios'].values():
        for items in runs.values():
            for item in items:
                item.pop('stderr', None)
                item.pop('results', None)
    return payload


def add_arguments(parser):
    parser.add_argument('--parts', nargs='+', default=['pg', 'mysql', 'small', 'migrate'], choices=['pg', 'mysql', 'small', 'migrate'],
                        help='suite: which groups to run (pg: S1, S2 and the overhead; mysql: S3; small: S5; migrate: S4)')
