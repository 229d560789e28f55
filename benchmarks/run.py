"""appvault.backup benchmarks: our modules against the hand-written baseline and the community modules, side by side.

    make bench BENCH_ARGS='--size-gb 1 --pairs 3'
    .venv/bin/python benchmarks/run.py --scenario pg_dump_breakdown --keep-data

Each scenario runs its variants interleaved (A B C D A B C D ...), prints a table of medians and ratios, and writes
JSON (every run, machine facts) and the markdown table to --out.  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import archive
import lib
import mysqlbench
import pgdata
import suite

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(lib.REPO / 'build' / 'collections'))

RSS_TARGET = 64 * lib.MIB
HAND_TARGET = 1.10
COMMUNITY_TARGET = 3.0


def log(msg):
    print(msg, flush=True)


# -- pg_dump ------------------------------------------------------------------------------------------------------
class PgDumpBench:
    """Shared set-up of the PostgreSQL scenarios: the server, a scratch output dir, the contenders."""

    def __init__(self, args):
        self.args = args
        self.server = pgdata.BenchServer(Path(args.data_dir) / ('pg-seed%s-%sgb' % (args.seed, args.size_gb)),
                                         args.seed, args.size_gb, log=log)
        self.out = Path(args.data_dir) / ('out-%d' % os.getpid())
        self.pg_dump = None

    def __enter__(self):
        self.server.start()
        lib.become_subreaper()  # after the server started: the postmaster must not become our child
        self.pg_dump = self.server.bin_dir + '/pg_dump'
        self.out.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.out, ignore_errors=True)
        self.server.stop(remove=not self.args.keep_data)
        return False

    def cpu_account(self):
        return lib.CpuAccount(lambda: [p for p in [self.server.postmaster_pid()] if p])

    def conn(self, **extra):
        args = {'name': pgdata.DB_NAME, 'login_host': '127.0.0.1', 'login_port': self.server.port,
                'login_user': pgdata.SUPERUSER, 'login_password': self.server.password}
        args.update(extra)
        return args

    def path(self, name):
        return self.out / name

    def poll_config(self, interval=0.05):
        """An ansible.cfg with a coarser internal_poll_interval (default 0.001 s: the controller wakes 1000 times a second)."""
        path = Path(self.args.data_dir) / 'ansible-poll.cfg'
        path.write_text('[defaults]\ninternal_poll_interval = %s\n' % interval)
        return {'ANSIBLE_CONFIG': str(path)}

    def clean(self):
        for entry in self.out.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    # contenders ----------------------------------------------------------------------------------------------
    def ours(self, extra_env=None, **options):
        dest = self.path('ours.pgc.zst')
        res = lib.run_playbook([{'name': 'ours', 'appvault.backup.postgresql_dump': self.conn(dest=str(dest), force=True, **options)}],
                               match='AnsiballZ_postgresql_dump', extra_env=extra_env)
        result = res['results'][0]
        res['module_duration'] = result.get('duration')
        res['output_size'] = (result.get('artefact') or {}).get('size')
        res['commands'] = result.get('commands')
        return res

    def hand(self, sha256=None):
        """The baseline; ``sha256='after'`` hashes the file once written, ``'tee'`` while it is written."""
        dest = self.path('hand.pgc.zst')
        script = '%s -Fc -Z0 | zstd -q -T2 -3 > %s' % (self.pg_dump, dest)
        if sha256 == 'after':
            script += ' && sha256sum %s' % dest
        elif sha256 == 'tee':
            script = '%s -Fc -Z0 | zstd -q -T2 -3 | tee %s | sha256sum' % (self.pg_dump, dest)
        env = dict(os.environ, **self.server.env())
        res = lib.measure(['bash', '-o', 'pipefail', '-c', script], env=env, match=None)
        if res['rc']:
            raise RuntimeError('hand pipeline failed: %s' % res['stderr'])
        res['output_size'] = dest.stat().st_size
        res['commands'] = [script]
        del res['stdout']
        return res

    def community(self, target):
        dest = self.path(target)
        task = dict(self.conn(state='dump', target=str(dest)))
        res = lib.run_playbook([{'name': 'community', 'community.postgresql.postgresql_db': task}],
                               match='AnsiballZ_postgresql_db')
        res['output_size'] = dest.stat().st_size
        res['commands'] = [res['results'][0].get('executed_commands') or res['results'][0].get('cmd')]
        return res


def scenario_pg_dump(args):
    variants_all = {
        'ours': ('A ours postgresql_dump', lambda b: b.ours()),
        'hand': ('B hand pg_dump|zstd -T2', lambda b: b.hand()),
        'community_gz': ('C community .sql.gz', lambda b: b.community('community.sql.gz')),
        'community_pgc': ('D community .pgc', lambda b: b.community('community.pgc')),
    }
    keys = args.variants or list(variants_all)
    with PgDumpBench(args) as bench:
        facts = machine_facts(bench)
        log('warm-up (untimed): hand pipeline once')
        bench.hand()
        bench.clean()
        variants = [lib.Variant(k, variants_all[k][0], (lambda k=k: variants_all[k][1](bench)), bench.clean) for k in keys]
        started = time.monotonic()
        runs = lib.interleave(variants, args.pairs, log=log, cpu=bench.cpu_account(), settle=args.settle)
        facts['bench_seconds'] = round(time.monotonic() - started, 1)
        facts['loadavg_end'] = list(os.getloadavg())
    summary = lib.summarize(runs, fields=('seconds', 'module_duration', 'module_peak_rss', 'module_tree_peak_rss', 'tree_peak_rss',
                                          'output_size', 'foreign_cpu', 'cpu_seconds'))
    hand = summary.get('hand', {}).get('seconds')
    ours = summary.get('ours', {}).get('seconds')
    hand_cpu = summary.get('hand', {}).get('cpu_seconds')
    rows = []
    for key in keys:
        s = summary[key]
        rows.append([variants_all[key][0], '%.2f (%.2f-%.2f)' % (s['seconds'], s['min_seconds'], s['max_seconds']),
                     lib.fmt_num(s['module_duration']), lib.fmt_num(lib.ratio(s['seconds'], hand), '%.2fx'),
                     lib.fmt_num(lib.ratio(s['seconds'], ours), '%.2fx'), lib.fmt_bytes(s['module_peak_rss']),
                     lib.fmt_bytes(s['module_tree_peak_rss'] or s['tree_peak_rss']), lib.fmt_bytes(s['output_size']),
                     lib.fmt_num(s['cpu_seconds']), lib.fmt_num(lib.ratio(s['cpu_seconds'], hand_cpu), '%.2fx'),
                     lib.fmt_num(s['foreign_cpu'])])
    table = lib.markdown_table(['variant', 'median s (min-max)', 'module duration s', 'time / hand', 'time / ours',
                                'module peak RSS', 'module+tools peak RSS', 'output size', 'CPU s', 'CPU / hand',
                                'foreign CPU s'], rows)
    checks = target_checks(runs, summary)
    md = '\n'.join([
        '# pg_dump: %.2f GiB database, %d interleaved rounds' % (facts['database_size'] / pgdata.GIB, args.pairs), '',
        describe_facts(facts), '', table, '', '## Targets', ''] + ['- %s' % c for c in checks] + [''])
    log('\n' + md)
    return {'scenario': 'pg_dump', 'args': vars(args), 'facts': facts, 'summary': summary, 'checks': checks,
            'runs': strip_runs(runs)}, md


def target_checks(runs, summary):
    checks = []
    if 'ours' in runs and 'hand' in runs:
        pairs = [a['seconds'] / b['seconds'] for a, b in zip(runs['ours'], runs['hand'])]
        mod = [a['module_duration'] / b['seconds'] for a, b in zip(runs['ours'], runs['hand']) if a.get('module_duration')]
        ratio = lib.median(pairs)
        checks.append('ours / hand, end to end (median of per-round ratios %s): %.2fx, target <= %.2fx: %s' % (
            ', '.join('%.2f' % p for p in pairs), ratio, HAND_TARGET, 'PASS' if ratio <= HAND_TARGET else 'MISS'))
        if mod:
            checks.append('ours module `duration` / hand (dump + sha256 + fsync only, no Ansible, no connect, no inventory): '
                          '%.2fx' % lib.median(mod))
    for key in ('community_gz', 'community_pgc'):
        if key in runs and 'ours' in runs:
            pairs = [c['seconds'] / a['seconds'] for c, a in zip(runs[key], runs['ours'])]
            ratio = lib.median(pairs)
            verdict = 'PASS' if ratio >= COMMUNITY_TARGET else 'MISS'
            checks.append('%s / ours: %.2fx, target >= %.1fx: %s' % (key, ratio, COMMUNITY_TARGET, verdict))
    if 'ours' in summary:
        peak = max(r['module_peak_rss'] or 0 for r in runs['ours'])
        checks.append('ours module peak RSS (max over rounds): %s, target <= %s: %s' % (
            lib.fmt_bytes(peak), lib.fmt_bytes(RSS_TARGET), 'PASS' if peak and peak <= RSS_TARGET else 'MISS'))
    return checks


# -- pg_dump_breakdown: where the time of one module run goes ----------------------------------------------------
def in_process_steps(bench):
    """Time each step of postgresql_dump's run() by calling its module_utils directly (no Ansible)."""
    from ansible_collections.appvault.backup.plugins.module_utils import _common, _postgres

    params = _postgres.connection_argument_spec_defaults()
    params.update(bench.conn(), format='custom', compression='zstd', compression_level=None, jobs=1, schemas=None,
                  exclude_schemas=None, exclude_tables=None, exclude_table_data=None, blobs=True, quote_all_identifiers=True)
    dest = str(bench.path('steps.pgc.zst'))
    steps = {}

    def timed(name, func):
        started = time.perf_counter()
        value = func()
        steps[name] = time.perf_counter() - started
        return value

    total = time.perf_counter()
    with _common.SecretDir() as secrets:
        conn = _postgres.Connection(params, secrets)
        timed('connect (2 psql queries)', conn.connect)
        timed('dump_plan (find pg_dump, --version of candidates)', lambda: _postgres.dump_plan(conn, params, _common.cpu_count()))
        partial = _common.partial_name(dest)
        facts = timed('dump: pg_dump | zstd pipeline, sha256 + flush beside it, final fsync',
                      lambda: _postgres.dump(conn, params, partial, _common.cpu_count())[3])
        timed('publish: rename', lambda: _common.publish(partial, dest, sealed=True))
        timed('inventory (catalog + count(*) of every table)', lambda: _postgres.inventory(conn))
    steps['total in-process'] = time.perf_counter() - total
    return {'seconds': steps['total in-process'], 'steps': steps, 'output_size': facts['size'], 'module_peak_rss': None}


def scenario_pg_dump_breakdown(args):
    variants_all = {
        'noop': ('ansible-playbook, ping task', lambda b: lib.run_playbook([{'ansible.builtin.ping': {}}], match='AnsiballZ_ping')),
        'ours_check': ('ours, check mode', lambda b: lib.run_playbook(
            [{'appvault.backup.postgresql_dump': b.conn(dest=str(b.path('c.pgc.zst')), force=True), 'check_mode': True}],
            match='AnsiballZ_postgresql_dump')),
        'sleep': ('ansible-playbook, command sleep 5', lambda b: lib.run_playbook([{'ansible.builtin.command': 'sleep 5'}])),
        'ours': ('ours, defaults', lambda b: b.ours()),
        'ours_noinv': ('ours, inventory: false', lambda b: b.ours(inventory=False)),
        'ours_poll': ('ours, internal_poll_interval=0.05', lambda b: b.ours(extra_env=b.poll_config())),
        'steps': ('in-process module_utils steps', in_process_steps),
        'hand': ('hand pg_dump|zstd -T2', lambda b: b.hand()),
        'hand_sha_after': ('hand, then sha256sum of the file', lambda b: b.hand(sha256='after')),
        'hand_tee_sha': ('hand | tee file | sha256sum', lambda b: b.hand(sha256='tee')),
    }
    keys = args.variants or list(variants_all)
    with PgDumpBench(args) as bench:
        facts = machine_facts(bench)
        bench.hand()
        bench.clean()
        variants = [lib.Variant(k, variants_all[k][0], (lambda k=k: variants_all[k][1](bench)), bench.clean) for k in keys]
        runs = lib.interleave(variants, args.pairs, log=log, cpu=bench.cpu_account(), settle=args.settle)
        facts['loadavg_end'] = list(os.getloadavg())
    summary = lib.summarize(runs, fields=('seconds', 'module_duration', 'module_peak_rss', 'foreign_cpu', 'cpu_seconds'))
    rows = [[variants_all[k][0], '%.2f (%.2f-%.2f)' % (summary[k]['seconds'], summary[k]['min_seconds'], summary[k]['max_seconds']),
             lib.fmt_num(summary[k]['module_duration']), lib.fmt_bytes(summary[k]['module_peak_rss']),
             lib.fmt_num(summary[k]['cpu_seconds']), lib.fmt_num(summary[k]['foreign_cpu'])] for k in keys]
    md = ['# pg_dump breakdown: %.2f GiB database, %d interleaved rounds' % (facts['database_size'] / pgdata.GIB, args.pairs), '',
          describe_facts(facts), '',
          lib.markdown_table(['variant', 'median s (min-max)', 'module duration s', 'module peak RSS', 'CPU s', 'foreign CPU s'], rows)]
    if 'steps' in runs:
        names = list(runs['steps'][0]['steps'])
        step_rows = [[n, '%.3f' % lib.median([r['steps'][n] for r in runs['steps']])] for n in names]
        summary['steps_median'] = dict((n, float(v)) for n, v in step_rows)
        md += ['', '## In-process steps (median s)', '', lib.markdown_table(['step', 'seconds'], step_rows)]
    md = '\n'.join(md + [''])
    log('\n' + md)
    return {'scenario': 'pg_dump_breakdown', 'args': vars(args), 'facts': facts, 'summary': summary, 'runs': strip_runs(runs)}, md


# -- common -----------------------------------------------------------------------------------------------------
def machine_facts(bench):
    server = bench.server
    return lib.machine_facts({
        'pg_server_version': server.version(),
        'pg_dump': lib._first_line([bench.pg_dump, '--version']),
        'database_size': server.database_size(),
        'data_set': server.meta,
        'data_generated_this_run': server.generated,
    })


def describe_facts(facts):
    return ('Machine: %d CPUs (%s), %.1f GiB RAM, load average %s at start, %s at end; PostgreSQL %s, %s, %s. '
            'Database %s bytes (%s).' % (
                facts['nproc'], facts['cpu_model'], facts['mem_total_bytes'] / pgdata.GIB,
                ' '.join('%.2f' % x for x in facts['loadavg']), ' '.join('%.2f' % x for x in facts.get('loadavg_end', [])),
                facts['pg_server_version'], facts['zstd'], facts['ansible_core'], facts['database_size'],
                lib.fmt_bytes(facts['database_size'])))


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


SCENARIOS = {'pg_dump': scenario_pg_dump, 'pg_dump_breakdown': scenario_pg_dump_breakdown,
             'archive_mixed': archive.scenario_archive_mixed, 'archive_small': archive.scenario_archive_small}
SCENARIOS.update(mysqlbench.SCENARIOS)
SCENARIOS['suite'] = suite.scenario_suite


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--scenario', choices=sorted(SCENARIOS), default='suite')
    parser.add_argument('--size-gb', type=float, default=1.0,
                        help='size of the generated database (pg_*, mysql_*) or storage tree (archive_mixed), GiB (default 1.0)')
    parser.add_argument('--pairs', type=int, default=3, help='interleaved rounds of all variants (default 3, at least 3)')
    parser.add_argument('--seed', default='appvault-1', help='seed of the generated data (default appvault-1)')
    parser.add_argument('--variants', nargs='+', help='run only these variants (keys as in the JSON output)')
    parser.add_argument('--keep-data', action='store_true',
                        help='keep the generated database under --data-dir for the next run (a kept one is always reused)')
    parser.add_argument('--settle', type=float, default=0.25, metavar='CORES',
                        help='before each run wait (up to 60 s) until other processes use less than CORES CPUs '
                             '(default 0.25; negative: do not wait)')
    parser.add_argument('--data-dir', default=str(HERE / 'data'), help='where the server and scratch output live')
    parser.add_argument('--out', default=str(HERE / 'results'), help='where JSON and markdown results are written')
    archive.add_arguments(parser)
    suite.add_arguments(parser)
    args = parser.parse_args(argv)
    # stop cleanly (server stopped, scratch output removed) on SIGTERM, and on SIGINT even when started in the background
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.settle < 0:
        args.settle = None
    if args.pairs < 3:
        log('note: fewer than 3 rounds; medians of %d runs are not worth much' % args.pairs)
    payload, md = SCENARIOS[args.scenario](args)
    for path in lib.write_results(args.out, args.scenario, payload, md):
        log('wrote %s' % path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
