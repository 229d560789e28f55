"""MariaDB scenarios: ``mysql_dump``, ``mysql_restore`` and ``mysql_breakdown`` (where one module run spends its time).

Same harness as the PostgreSQL scenarios (lib.py): interleaved rounds, medians, the module process's peak RSS, CPU of
the run and of the server, foreign CPU.  The data set comes from mysqldata.py.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import lib
import mysqldata
from harness.mysql import DUMP, SUPERUSER

# exactly the flags mysql_dump passes to mariadb-dump (_mysql.dump_plan), so the baseline dumps the same SQL
DUMP_FLAGS = ['--single-transaction', '--skip-lock-tables', '--hex-blob', '--default-character-set=utf8mb4', '--no-tablespaces',
              '--max-allowed-packet=1G', '--routines', '--triggers', '--events']
COMMUNITY = {'community_gz': 'sql.gz', 'community_zst': 'sql.zst'}  # community.mysql picks the compressor by the suffix
TARGETS = {
    # scenario: (max ours/hand, min community/ours)
    'mysql_dump': (1.10, 1.5),
    'mysql_restore': (1.10, 1.2),
}


def log(msg):
    print(msg, flush=True)


class MyBench:
    """Shared set-up of the MariaDB scenarios: the server, a scratch output dir, the contenders."""

    def __init__(self, args):
        self.args = args
        self.server = mysqldata.BenchServer(Path(args.data_dir) / ('my-seed%s-%sgb' % (args.seed, args.size_gb)),
                                            args.seed, args.size_gb, log=log)
        self.out = Path(args.data_dir).resolve() / ('my-out-%d' % os.getpid())
        self.counter = 0
        self.created = []  # databases a restore variant made: dropped after each run
        self.expected = None  # restored_objects() of the source database, read once

    def __enter__(self):
        self.server.start()
        lib.become_subreaper()  # after the server started
        self.out.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc):
        try:
            for name in self.created:
                self.server.sql('DROP DATABASE IF EXISTS `%s`' % name)
        finally:
            shutil.rmtree(self.out, ignore_errors=True)
            self.server.stop(remove=not self.args.keep_data)
        return False

    def cpu_account(self):
        return lib.CpuAccount(lambda: [p for p in [self.server.pid()] if p])

    def conn(self, name=mysqldata.DB_NAME, **extra):
        args = {'name': name, 'login_host': '127.0.0.1', 'login_port': self.server.port, 'login_user': SUPERUSER,
                'login_password': self.server.password}
        args.update(extra)
        return args

    def path(self, name):
        return self.out / name

    def clean(self, keep=('src.sql.zst', 'src.sql.gz')):
        """Remove the run's output (the restore sources stay) and drop the databases a restore created."""
        for entry in self.out.iterdir():
            if entry.name in keep:
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        while self.created:
            self.server.sql('DROP DATABASE IF EXISTS `%s`' % self.created.pop())

    def fresh_db(self, key):
        self.counter += 1
        name = 'r_%s_%d' % (key, self.counter)
        self.created.append(name)
        return name

    # dump contenders ---------------------------------------------------------------------------------------------
    def ours_dump(self, dest=None, extra_env=None, **options):
        dest = dest or self.path('ours.sql.zst')
        res = lib.run_playbook([{'name': 'ours', 'appvault.backup.mysql_dump': self.conn(dest=str(dest), force=True, **options)}],
                               match='AnsiballZ_mysql_dump', extra_env=extra_env)
        result = res['results'][0]
        res['module_duration'] = result.get('duration')
        res['output_size'] = (result.get('artefact') or {}).get('size')
        res['commands'] = result.get('commands')
        return res

    def hand_dump_script(self, dest):
        return '%s %s %s | zstd -q -T2 -3 > %s' % (' '.join(self.server.client_argv(DUMP)), ' '.join(DUMP_FLAGS),
                                                   mysqldata.DB_NAME, dest)

    def hand_dump(self):
        dest = self.path('hand.sql.zst')
        return self._bash(self.hand_dump_script(dest), dest)

    def community_dump(self, suffix):
        """community.mysql.mysql_db state=dump: mariadb-dump | gzip (default level 6) or | zstd (level 3, one thread)."""
        dest = self.path('community.' + suffix)
        task = self.conn(state='dump', target=str(dest), single_transaction=True, skip_lock_tables=True, hex_blob=True,
                         encoding='utf8mb4', dump_extra_args='--routines --triggers --events')
        res = lib.run_playbook([{'name': 'community', 'community.mysql.mysql_db': task}], match='AnsiballZ_mysql_db')
        res['output_size'] = dest.stat().st_size
        res['commands'] = self.masked(res['results'][0].get('executed_commands'))
        res['results'] = [dict(r, executed_commands=self.masked(r.get('executed_commands'))) for r in res['results']]
        return res

    def masked(self, commands):
        """community.mysql puts the password on the command line (and in its result): keep it out of the results."""
        return [c.replace(self.server.password, '********') for c in commands or []]

    def _bash(self, script, dest=None):
        res = lib.measure(['bash', '-o', 'pipefail', '-c', script])
        if res['rc']:
            raise RuntimeError('hand pipeline failed: %s' % res['stderr'][-2000:])
        res['output_size'] = dest.stat().st_size if dest else None
        res['commands'] = [script]
        del res['stdout']
        return res

    # restore contenders ------------------------------------------------------------------------------------------
    def prepare_sources(self):
        """The dumps the restore variants read (untimed): ours (zstd; community_zst reads it too) and the same SQL
        through gzip -6 (what community_gz reads; gzip -6 is what community.mysql's own .sql.gz dump writes)."""
        zst, gz = self.path('src.sql.zst'), self.path('src.sql.gz')
        if not zst.exists():
            self.ours_dump(dest=zst)
        if not gz.exists():
            res = lib.measure(['bash', '-o', 'pipefail', '-c', 'zstd -dcq %s | gzip -6 > %s' % (zst, gz)])
            if res['rc']:
                raise RuntimeError('gzip of the restore source failed: %s' % res['stderr'])
        return zst, gz

    def ours_restore(self, extra_env=None, **options):
        target = self.fresh_db('ours')
        task = self.conn(target, src=str(self.path('src.sql.zst')), create=True, **options)
        res = lib.run_playbook([{'name': 'ours', 'appvault.backup.mysql_restore': task}], match='AnsiballZ_mysql_restore',
                               extra_env=extra_env)
        result = res['results'][0]
        res['module_duration'] = result.get('duration')
        res['commands'] = result.get('commands')
        return self.check_restored(target, res)

    def restored_objects(self, database):
        """Row count of every table and the number of views, routines and triggers of ``database``."""
        counts = {t: int(self.server.sql('SELECT COUNT(*) FROM `%s`.`%s`' % (database, t))) for t in mysqldata.TABLES}
        for kind, sql in (('views', 'SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s'),
                          ('routines', 'SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s'),
                          ('triggers', 'SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s')):
            counts[kind] = int(self.server.sql(sql % ("'%s'" % database)))
        return counts

    def check_restored(self, database, res):
        """After the timed run: the restored database must hold what the source holds (every variant, same check)."""
        if self.expected is None:
            self.expected = self.restored_objects(mysqldata.DB_NAME)
        got = self.restored_objects(database)
        if got != self.expected:
            raise RuntimeError('restore into %s is incomplete: %s, expected %s' % (database, got, self.expected))
        res['restored'] = got
        return res

    def hand_restore_script(self, target):
        return 'zstd -dc %s | %s %s' % (self.path('src.sql.zst'), ' '.join(self.server.client_argv()), target)

    def hand_restore(self):
        target = self.fresh_db('hand')
        self.server.sql('CREATE DATABASE `%s` CHARACTER SET utf8mb4' % target)  # untimed (a few ms; the modules create theirs)
        return self.check_restored(target, self._bash(self.hand_restore_script(target)))

    def community_restore(self, suffix):
        """community.mysql.mysql_db state=import: creates the database, then gzip -dc | mariadb or zstd -dc | mariadb."""
        target = self.fresh_db('community')
        task = self.conn(target, state='import', target=str(self.path('src.' + suffix)), encoding='utf8mb4')
        res = lib.run_playbook([{'name': 'community', 'community.mysql.mysql_db': task}], match='AnsiballZ_mysql_db')
        res['commands'] = self.masked(res['results'][0].get('executed_commands'))
        res['results'] = [dict(r, executed_commands=self.masked(r.get('executed_commands'))) for r in res['results']]
        return self.check_restored(target, res)


# -- scenarios ---------------------------------------------------------------------------------------------------
DUMP_VARIANTS = {
    'ours': ('A ours mysql_dump (zstd)', lambda b: b.ours_dump()),
    'hand': ('B hand mariadb-dump|zstd -T2', lambda b: b.hand_dump()),
    'community_gz': ('C community mysql_db .sql.gz', lambda b: b.community_dump('sql.gz')),
    'community_zst': ('D community mysql_db .sql.zst', lambda b: b.community_dump('sql.zst')),
}
RESTORE_VARIANTS = {
    'ours': ('A ours mysql_restore (zstd)', lambda b: b.ours_restore()),
    'hand': ('B hand zstd -dc|mariadb', lambda b: b.hand_restore()),
    'ours_1job': ('E ours mysql_restore jobs=1', lambda b: b.ours_restore(jobs=1)),
    'community_gz': ('C community mysql_db import .sql.gz', lambda b: b.community_restore('sql.gz')),
    'community_zst': ('D community mysql_db import .sql.zst', lambda b: b.community_restore('sql.zst')),
}
SHARED = ('The machine is shared: other agents worked on it during the run.  Each run waited (up to 60 s) for other '
          'processes to use less than --settle cores; `foreign CPU s` is the CPU others used during the run and '
          '`load1` the 1-minute load average before it (per run in the JSON).')


def _scenario(args, name, variants_all):
    keys = args.variants or list(variants_all)
    with MyBench(args) as bench:
        facts = machine_facts(bench)
        if name == 'mysql_restore':
            log('preparing the restore sources (untimed): ours dump, then the same SQL through gzip -6')
            bench.prepare_sources()
            log('warm-up (untimed): hand restore once')
            bench.hand_restore()
        else:
            log('warm-up (untimed): hand dump once')
            bench.hand_dump()
        bench.clean()
        variants = [lib.Variant(k, variants_all[k][0], (lambda k=k: variants_all[k][1](bench)), bench.clean) for k in keys]
        started = time.monotonic()
        runs = lib.interleave(variants, args.pairs, log=log, cpu=bench.cpu_account(), settle=args.settle)
        facts['bench_seconds'] = round(time.monotonic() - started, 1)
        facts['loadavg_end'] = list(os.getloadavg())
        if name == 'mysql_restore':
            facts['restore_source_size'] = bench.path('src.sql.zst').stat().st_size
            facts['restore_source_gz_size'] = bench.path('src.sql.gz').stat().st_size
    summary = lib.summarize(runs, fields=('seconds', 'module_duration', 'module_peak_rss', 'module_tree_peak_rss', 'tree_peak_rss',
                                          'output_size', 'foreign_cpu', 'cpu_seconds', 'load1_before'))
    hand = summary.get('hand', {}).get('seconds')
    ours = summary.get('ours', {}).get('seconds')
    rows = []
    for key in keys:
        s = summary[key]
        rows.append([variants_all[key][0], '%.2f (%.2f-%.2f)' % (s['seconds'], s['min_seconds'], s['max_seconds']),
                     lib.fmt_num(s['module_duration']), lib.fmt_num(lib.ratio(s['seconds'], hand), '%.2fx'),
                     lib.fmt_num(lib.ratio(s['seconds'], ours), '%.2fx'), lib.fmt_bytes(s['module_peak_rss']),
                     lib.fmt_bytes(s['module_tree_peak_rss'] or s['tree_peak_rss']), lib.fmt_bytes(s['output_size']),
                     lib.fmt_num(s['cpu_seconds']), lib.fmt_num(s['foreign_cpu']), lib.fmt_num(s['load1_before'])])
    table = lib.markdown_table(['variant', 'median s (min-max)', 'module duration s', 'time / hand', 'time / ours',
                                'module peak RSS', 'module+tools peak RSS', 'output size', 'CPU s', 'foreign CPU s',
                                'load1 before'], rows)
    checks = target_checks(name, runs)
    size = '%.2f GiB database (InnoDB files)' % (facts['database_size'] / mysqldata.GIB)
    if name == 'mysql_restore':
        size = 'restore of a %s zstd dump of a %s' % (lib.fmt_bytes(facts.get('restore_source_size')), size)
    md = '\n'.join([
        '# %s: %s, %d interleaved rounds' % (name, size, args.pairs), '',
        describe_facts(facts), '', SHARED, '', table, '', '## Targets', ''] + ['- %s' % c for c in checks] + [''])
    log('\n' + md)
    return {'scenario': name, 'args': vars(args), 'facts': facts, 'summary': summary, 'checks': checks,
            'runs': strip_runs(runs)}, md


def target_checks(name, runs):
    max_hand, min_community = TARGETS[name]
    checks = []
    if 'ours' in runs and 'hand' in runs:
        pairs = [a['seconds'] / b['seconds'] for a, b in zip(runs['ours'], runs['hand'])]
        ratio = lib.median(pairs)
        checks.append('ours / hand, end to end (median of per-round ratios %s): %.2fx, target <= %.2fx: %s' % (
            ', '.join('%.2f' % p for p in pairs), ratio, max_hand, 'PASS' if ratio <= max_hand else 'MISS'))
        mod = [a['module_duration'] / b['seconds'] for a, b in zip(runs['ours'], runs['hand']) if a.get('module_duration')]
        if mod:
            checks.append('ours module `duration` / hand (no Ansible start-up, connect, checks or inventory): %.2fx' % lib.median(mod))
    for key in COMMUNITY:
        if key in runs and 'ours' in runs:
            pairs = [c['seconds'] / a['seconds'] for c, a in zip(runs[key], runs['ours'])]
            ratio = lib.median(pairs)
            verdict = 'PASS' if ratio >= min_community else 'MISS'
            checks.append('%s / ours (median of per-round ratios %s): %.2fx, target >= %.1fx: %s' % (
                key, ', '.join('%.2f' % p for p in pairs), ratio, min_community, verdict))
    if 'ours' in runs:
        peak = max(r['module_peak_rss'] or 0 for r in runs['ours'])
        checks.append('ours module peak RSS (max over rounds): %s' % lib.fmt_bytes(peak))
    return checks


def scenario_mysql_dump(args):
    return _scenario(args, 'mysql_dump', DUMP_VARIANTS)


def scenario_mysql_restore(args):
    return _scenario(args, 'mysql_restore', RESTORE_VARIANTS)


# -- mysql_breakdown: where one module run spends its time --------------------------------------------------------
def _collection():
    sys.path.insert(0, str(lib.REPO / 'build' / 'collections'))
    from ansible_collections.appvault.backup.plugins.module_utils import _common, _mysql
    return _common, _mysql


class _Steps:
    def __init__(self):
        self.steps = {}
        self.started = time.perf_counter()

    def __call__(self, name, func):
        started = time.perf_counter()
        value = func()
        self.steps[name] = self.steps.get(name, 0.0) + time.perf_counter() - started
        return value

    def result(self, **extra):
        self.steps['total in-process'] = time.perf_counter() - self.started
        return dict(seconds=self.steps['total in-process'], steps=self.steps, module_peak_rss=None, **extra)


def dump_steps(bench):
    """mysql_dump's run(), step by step through its module_utils (no Ansible)."""
    _common, _mysql = _collection()
    params = _mysql.connection_argument_spec_defaults()
    params.update(bench.conn(), compression='zstd', compression_level=None, replace=False, exclude_tables=None,
                  exclude_table_data=None)
    dest = str(bench.path('steps.sql.zst'))
    timed = _Steps()
    cores = _common.cpu_count()
    with _common.SecretDir() as secrets:
        conn = _mysql.Connection(params, secrets)
        timed('connect (SELECT VERSION())', conn.connect)
        timed('database_exists', lambda: conn.database_exists(params['name']))
        tool = timed('dump_tool (find + --version + --help)', lambda: _mysql.dump_tool(conn))
        plan = _mysql.dump_plan(conn, params, tool, cores)
        timed('non_transactional_tables', lambda: _mysql.non_transactional_tables(conn, params['name']))
        partial = _common.partial_name(dest)
        timed('dump: mariadb-dump | zstd pipeline', lambda: _mysql.dump(conn, plan, partial))
        facts = timed('seal: sha256 re-read (fsync in a thread)', lambda: _common.seal(partial))
        timed('publish: rename + fsync dir', lambda: _common.publish(partial, dest, sealed=True))
        timed('inventory (information_schema + COUNT(*) of every table)', lambda: _mysql.inventory(conn))
    return timed.result(output_size=facts['size'])


def restore_steps(bench):
    """mysql_restore's run(), step by step through its module_utils (no Ansible)."""
    _common, _mysql = _collection()
    target = bench.fresh_db('steps')
    src = str(bench.path('src.sql.zst'))
    params = _mysql.connection_argument_spec_defaults()
    params.update(bench.conn(target))
    timed = _Steps()
    with _common.SecretDir() as secrets:
        conn = _mysql.Connection(params, secrets)
        outer = timed('detect_compression', lambda: _mysql.detect_compression(src))
        timed('connect + client()', lambda: (conn.connect(), conn.client()))
        scan = timed('validate: scan_dump (zstd -dc | grep -a -o -E over the whole dump)', lambda: _mysql.scan_dump(src, outer))
        timed('missing_accounts (definers)', lambda: _mysql.missing_accounts(conn, scan['definers']))
        timed('database_exists + can_skip_binlog', lambda: (conn.database_exists(target), conn.can_skip_binlog()))
        steps = _mysql.restore_steps(conn, outer, target, None, True)
        timed('create_database', lambda: _mysql.create_database(conn, target))
        timed('restore: zstd -dc | mariadb pipeline', lambda: _mysql.restore(conn, steps, src, target))
        timed('inventory (information_schema + COUNT(*) of every table)', lambda: _mysql.inventory(conn, target))
        timed('artefact_facts: sha256 of the source', lambda: _common.artefact_facts(src))
    return timed.result()


def hand_scan(bench):
    """What validation costs by hand: zstd -dc alone, and zstd -dc | tail (the completion line only)."""
    src = bench.path('src.sql.zst')
    timed = _Steps()
    timed('zstd -dc > /dev/null', lambda: bench._bash('zstd -dcq %s > /dev/null' % src))
    timed('zstd -dc | tail -c 200 (completion line)', lambda: bench._bash('zstd -dcq %s | tail -c 200 > /dev/null' % src))
    timed('sha256sum of the source', lambda: bench._bash('sha256sum %s > /dev/null' % src))
    return timed.result()


BREAKDOWN_VARIANTS = {
    'noop': ('ansible-playbook, ping task', lambda b: lib.run_playbook([{'ansible.builtin.ping': {}}], match='AnsiballZ_ping')),
    'ours_dump': ('ours mysql_dump, defaults', lambda b: b.ours_dump()),
    'ours_dump_noinv': ('ours mysql_dump, inventory: false', lambda b: b.ours_dump(inventory=False)),
    'dump_steps': ('mysql_dump steps in-process', dump_steps),
    'hand_dump': ('hand mariadb-dump|zstd -T2', lambda b: b.hand_dump()),
    'ours_restore': ('ours mysql_restore, defaults', lambda b: b.ours_restore()),
    'ours_restore_novalidate': ('ours mysql_restore, validate: false', lambda b: b.ours_restore(validate=False)),
    'restore_steps': ('mysql_restore steps in-process', restore_steps),
    'hand_restore': ('hand zstd -dc|mariadb', lambda b: b.hand_restore()),
    'hand_scan': ('hand: decompress / tail / sha256sum of the source', hand_scan),
}


def scenario_mysql_breakdown(args):
    keys = args.variants or list(BREAKDOWN_VARIANTS)
    with MyBench(args) as bench:
        facts = machine_facts(bench)
        bench.prepare_sources()
        bench.hand_dump()
        bench.clean()
        variants = [lib.Variant(k, BREAKDOWN_VARIANTS[k][0], (lambda k=k: BREAKDOWN_VARIANTS[k][1](bench)), bench.clean)
                    for k in keys]
        runs = lib.interleave(variants, args.pairs, log=log, cpu=bench.cpu_account(), settle=args.settle)
        facts['loadavg_end'] = list(os.getloadavg())
        facts['restore_source_size'] = bench.path('src.sql.zst').stat().st_size
    summary = lib.summarize(runs, fields=('seconds', 'module_duration', 'module_peak_rss', 'foreign_cpu', 'cpu_seconds'))
    rows = [[BREAKDOWN_VARIANTS[k][0], '%.2f (%.2f-%.2f)' % (summary[k]['seconds'], summary[k]['min_seconds'], summary[k]['max_seconds']),
             lib.fmt_num(summary[k]['module_duration']), lib.fmt_bytes(summary[k]['module_peak_rss']),
             lib.fmt_num(summary[k]['cpu_seconds']), lib.fmt_num(summary[k]['foreign_cpu'])] for k in keys]
    md = ['# mysql breakdown: %.2f GiB database, %s zstd dump, %d interleaved rounds' % (
        facts['database_size'] / mysqldata.GIB, lib.fmt_bytes(facts['restore_source_size']), args.pairs), '',
        describe_facts(facts), '', lib.markdown_table(['variant', 'median s (min-max)', 'module duration s', 'module peak RSS',
                                                       'CPU s', 'foreign CPU s'], rows)]
    summary['steps_median'] = {}
    for key in ('dump_steps', 'restore_steps', 'hand_scan'):
        if key in runs:
            names = list(runs[key][0]['steps'])
            step_rows = [[n, '%.3f' % lib.median([r['steps'][n] for r in runs[key]])] for n in names]
            summary['steps_median'][key] = dict((n, float(v)) for n, v in step_rows)
            md += ['', '## %s (median s)' % BREAKDOWN_VARIANTS[key][0], '', lib.markdown_table(['step', 'seconds'], step_rows)]
    md = '\n'.join(md + [''])
    log('\n' + md)
    return {'scenario': 'mysql_breakdown', 'args': vars(args), 'facts': facts, 'summary': summary, 'runs': strip_runs(runs)}, md


# -- common -----------------------------------------------------------------------------------------------------
def machine_facts(bench):
    server = bench.server
    return lib.machine_facts({
        'mariadb_server_version': server.version(),
        'mariadb_dump': lib._first_line([DUMP, '--version']),
        'database_size': server.database_size(),
        'data_length': server.data_length(),
        'data_set': server.meta,
        'data_generated_this_run': server.generated,
    })


def describe_facts(facts):
    return ('Machine: %d CPUs (%s), %.1f GiB RAM, load average %s at start, %s at end; MariaDB %s, %s, %s. '
            'Database %s bytes of InnoDB files (%s; data+index length %s).' % (
                facts['nproc'], facts['cpu_model'], facts['mem_total_bytes'] / mysqldata.GIB,
                ' '.join('%.2f' % x for x in facts['loadavg']), ' '.join('%.2f' % x for x in facts.get('loadavg_end', [])),
                facts['mariadb_server_version'], facts['zstd'], facts['ansible_core'], facts['database_size'],
                lib.fmt_bytes(facts['database_size']), lib.fmt_bytes(facts['data_length'])))


def strip_runs(runs):
    """Runs without bulky fields (Ansible results are kept minus the inventory)."""
    out = {}
    for key, items in runs.items():
        out[key] = []
        for item in items:
            item = dict(item)
            item.pop('stderr', None)
            item['results'] = [{k: v for k, v in r.items() if k != 'inventory'} for r in item.get('results', [])]
            out[key].append(item)
    return out


SCENARIOS = {'mysql_dump': scenario_mysql_dump, 'mysql_restore': scenario_mysql_restore,
             'mysql_breakdown': scenario_mysql_breakdown}
