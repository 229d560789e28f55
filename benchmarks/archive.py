"""Scenarios ``archive_mixed`` and ``archive_small``: ``appvault.backup.archive_create`` against ``tar | zstd`` by hand
and ``community.general.archive``, on generated application storage trees (see storagedata.py), plus a peak-RSS
sweep of our module over input sizes (mixed) or file counts (small).

Variants (keys):

* ``ours``: ``appvault.backup.archive_create`` (paths: the tree; compression zstd, its default level 3,
  ``zstd -T<cores>``) through ``ansible-playbook``, timed end to end; the module's ``duration`` is reported too.
* ``hand``: ``bash -o pipefail -c 'tar -cf - -C ROOT storage | zstd -q -T2 -3 > file'``.
* ``community_gz``: ``community.general.archive`` ``format: gz`` (Python tarfile + zlib, level 9).

Extra variants for finding where the time goes (not run unless named with ``--variants``):

* ``steps``: the module's own steps, called in-process through its module_utils and timed one by one: walk
  (lstat), the hash pass (sha256 of every file: the first read of the data), the manifest, the
  ``tar | zstd | tee | sha256sum`` stream (the second read), the re-lstat, the sidecar and publish.
* ``hand_tee_sha``: ``tar | zstd | tee file | sha256sum`` (the hand pipeline plus our whole-file checksum).
* ``hand_hash_first``: a Python sha256 pass over every file (1 MiB reads, what ``member_table`` does), then the hand
  pipeline: the price of reading the data twice without the rest of the module.
* ``noop``: ``ansible-playbook`` with one ``ping`` task (Ansible's fixed cost); run by default, for the lower bound
  (lib.lower_bound: what no implementation of ours can beat here, from hand's CPU, the sha256 the format needs and
  Ansible's own cost).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import time
from pathlib import Path

import lib
import storagedata

HAND_TARGET = 1.15
COMMUNITY_TARGET = 3.0
FLAT_TARGET = 1.10  # peak RSS at the largest input <= 1.10 x the smallest: "flat"
SHARED = ('The machine is shared: other agents worked on it during the run.  Each run waited (up to 60 s) for other '
          'processes to use less than --settle cores; `foreign CPU s` is the CPU others used during the run and '
          '`load1 before` the 1-minute load average before it (per run in the JSON).')


def log(msg):
    print(msg, flush=True)


class ArchiveBench:
    """Scratch output directory and the contenders, for one storage tree at a time."""

    def __init__(self, args):
        self.args = args
        self.data = Path(args.data_dir)
        self.out = self.data / ('archive-out-%d' % os.getpid())
        self.generated = []

    def __enter__(self):
        lib.become_subreaper()
        self.out.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.out, ignore_errors=True)
        if not self.args.keep_data:
            for tree in self.generated:
                shutil.rmtree(tree, ignore_errors=True)
        return False

    # trees -------------------------------------------------------------------------------------------------------
    def mixed_tree(self, size_gb):
        size = int(size_gb * storagedata.GIB)
        tree = self.data / ('storage-mixed-%s-%d' % (self.args.seed, size))
        meta = storagedata.generate_mixed(tree, size, self.args.seed, log=log)
        self.generated.append(tree)
        return tree, meta

    def small_tree(self, count):
        tree = self.data / ('storage-small-%s-%d' % (self.args.seed, count))
        meta = storagedata.generate_small(tree, count, self.args.seed, log=log)
        self.generated.append(tree)
        return tree, meta

    def clean(self):
        for entry in self.out.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    # contenders ----------------------------------------------------------------------------------------------------
    def ours(self, tree):
        dest = self.out / 'ours.tar.zst'
        task = {'dest': str(dest), 'app': {'name': 'bench'}, 'paths': [{'id': 'storage', 'path': str(tree / 'storage')}]}
        res = lib.run_playbook([{'name': 'ours', 'appvault.backup.archive_create': task}], match='AnsiballZ_archive_create')
        result = res['results'][0]
        res['module_duration'] = result.get('duration')
        res['output_size'] = result.get('size')
        res['members'] = result.get('members')
        res['commands'] = result.get('commands')
        res['results'] = [{k: v for k, v in result.items() if k not in ('manifest',)}]
        return res

    def hand(self, tree, mode=None):
        dest = self.out / 'hand.tar.zst'
        script = 'tar -cf - -C %s storage | zstd -q -T2 -3' % tree
        script += ' | tee %s | sha256sum' % dest if mode == 'tee_sha' else ' > %s' % dest
        started = time.perf_counter()
        hashed = hash_tree(tree / 'storage') if mode == 'hash_first' else None
        res = lib.measure(['bash', '-o', 'pipefail', '-c', script], match=None)
        if res['rc']:
            raise RuntimeError('hand pipeline failed: %s' % res['stderr'])
        if hashed is not None:
            res['hash_seconds'] = hashed
            res['seconds'] = time.perf_counter() - started
        res['output_size'] = dest.stat().st_size
        res['commands'] = [script]
        del res['stdout']
        return res

    def community(self, tree):
        dest = self.out / 'community.tar.gz'
        task = {'path': str(tree / 'storage'), 'dest': str(dest), 'format': 'gz'}
        res = lib.run_playbook([{'name': 'community', 'community.general.archive': task}], match='AnsiballZ_archive')
        res['output_size'] = dest.stat().st_size
        res['results'] = [{k: v for k, v in r.items() if k not in ('archived', 'expanded_paths', 'expanded_exclude_paths')}
                          for r in res['results']]
        return res

    def noop(self, _tree):
        return lib.noop_playbook()

    def steps(self, tree):
        return in_process_steps(self, tree)


def hash_tree(root):
    """sha256 of every regular file under ``root`` with 1 MiB reads, like member_table; returns the seconds taken."""
    started = time.perf_counter()
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                digest = hashlib.sha256()
                with open(path, 'rb') as fileobj:
                    while True:
                        chunk = fileobj.read(1024 * 1024)
                        if not chunk:
                            break
                        digest.update(chunk)
    return time.perf_counter() - started


def in_process_steps(bench, tree):
    """Time each step of archive_create's create() by calling its module_utils directly (no Ansible, no lock)."""
    from ansible_collections.appvault.backup.plugins.module_utils import _archive, _catalog, _common, _manifest, _runner

    dest = str(bench.out / 'steps.tar.zst')
    steps = {}

    def timed(name, func):
        started = time.perf_counter()
        value = func()
        steps[name] = time.perf_counter() - started
        return value

    total = time.perf_counter()
    sources, _warnings = _archive.plan_sources([], [{'id': 'storage', 'path': str(tree / 'storage')}])
    compress, level = _archive.compressor_argv('zstd', None, _common.cpu_count())
    partial = _common.partial_name(dest)
    stats, warnings = {}, []
    with _common.SecretDir() as secrets:
        manifest_path = secrets.write('manifest.json', '')
        spool = _archive.Spool(secrets, [s['member'] for s in sources])
        entries = _archive.walk(sources, stats, warnings, skip=[str(bench.out)])
        timed('walk + hash + spool the member table (1st read)',
              lambda: spool.fill(_archive.describe(entries, _common.cpu_count()), first_paths=[manifest_path]))

        def manifest_step():
            manifest = _archive.build_manifest({'name': 'bench'}, _catalog.utc_now(), None, sources, stats, spool.tops, 'zstd',
                                               level, None, warnings)
            spool.write_manifest(manifest_path, manifest)

        timed('manifest: header + spooled member table', manifest_step)
        manifest_size = os.path.getsize(manifest_path)
        transforms = [(manifest_path, _manifest.MANIFEST_MEMBER)] + [(s['src'], s['member']) for s in sources]
        stages = [_archive.tar_create_argv(spool.list_path, transforms), compress]

        def stream():
            out_fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _runner.pipeline(stages, stdout_fd=out_fd)
            finally:
                os.close(out_fd)

        timed('stream: tar | zstd > file (2nd read)', stream)
        changed = timed('re-lstat every file (change check)', spool.changed)
        members = spool.count
    if changed:
        raise RuntimeError('%d files changed during the in-process run' % len(changed))
    digest = timed('seal (sha256 + fsync)', lambda: _common.seal(partial)['sha256'])
    timed('sidecar + publish (chmod, rename)', lambda: (_manifest.write_checksum_file(dest, digest), _common.publish(partial, dest, sealed=True)))
    steps['total in-process'] = time.perf_counter() - total
    return {'seconds': steps['total in-process'], 'steps': steps, 'output_size': os.path.getsize(dest),
            'manifest_size': manifest_size, 'members': members, 'module_peak_rss': None}


VARIANTS = {
    'ours': ('A ours archive_create', lambda b, t: b.ours(t)),
    'hand': ('B hand tar|zstd -T2 -3', lambda b, t: b.hand(t)),
    'community_gz': ('C community.general.archive gz', lambda b, t: b.community(t)),
    'steps': ('in-process module_utils steps', lambda b, t: b.steps(t)),
    'hand_tee_sha': ('hand | tee file | sha256sum', lambda b, t: b.hand(t, 'tee_sha')),
    'hand_hash_first': ('python sha256 pass, then hand', lambda b, t: b.hand(t, 'hash_first')),
    'noop': ('ansible-playbook, ping task', lambda b, t: b.noop(t)),
}
DEFAULT_KEYS = ['ours', 'hand', 'community_gz', 'noop']


def _compare(bench, tree, args):
    keys = args.variants or DEFAULT_KEYS
    unknown = [k for k in keys if k not in VARIANTS]
    if unknown:
        raise SystemExit('unknown variants %s (known: %s)' % (', '.join(unknown), ', '.join(VARIANTS)))
    log('warm-up (untimed): hand pipeline once, to read the tree into the page cache')
    bench.hand(tree)
    bench.clean()
    variants = [lib.Variant(k, VARIANTS[k][0], (lambda k=k: VARIANTS[k][1](bench, tree)), bench.clean) for k in keys]
    runs = lib.interleave(variants, args.pairs, log=log, cpu=lib.CpuAccount(), settle=args.settle)
    summary = lib.summarize(runs, fields=('seconds', 'module_duration', 'module_peak_rss', 'module_tree_peak_rss',
                                          'tree_peak_rss', 'output_size', 'foreign_cpu', 'cpu_seconds', 'load1_before'))
    return keys, runs, summary


def _rss_sweep(bench, trees, args):
    """Our module only, on each tree (label -> tree), interleaved; returns (runs, summary)."""
    for tree in trees.values():
        bench.hand(tree)  # page cache warm-up, untimed
        bench.clean()
    variants = [lib.Variant(label, 'ours on %s' % label, (lambda t=tree: bench.ours(t)), bench.clean) for label, tree in trees.items()]
    runs = lib.interleave(variants, args.rss_rounds, log=log, cpu=lib.CpuAccount(), settle=args.settle)
    summary = lib.summarize(runs, fields=('seconds', 'module_duration', 'module_peak_rss', 'module_tree_peak_rss', 'output_size',
                                          'cpu_seconds', 'foreign_cpu', 'members'))
    for label in trees:
        summary[label]['max_module_peak_rss'] = max(r['module_peak_rss'] or 0 for r in runs[label])
    return runs, summary


def _main_table(keys, summary):
    hand = summary.get('hand', {}).get('seconds')
    ours = summary.get('ours', {}).get('seconds')
    rows = []
    for key in keys:
        s = summary[key]
        rows.append([VARIANTS[key][0], '%.2f (%.2f-%.2f)' % (s['seconds'], s['min_seconds'], s['max_seconds']),
                     lib.fmt_num(s['module_duration']), lib.fmt_num(lib.ratio(s['seconds'], hand), '%.2fx'),
                     lib.fmt_num(lib.ratio(s['seconds'], ours), '%.2fx'), lib.fmt_bytes(s['module_peak_rss']),
                     lib.fmt_bytes(s['module_tree_peak_rss'] or s['tree_peak_rss']), lib.fmt_bytes(s['output_size']),
                     lib.fmt_num(s['cpu_seconds']), lib.fmt_num(s['foreign_cpu']), lib.fmt_num(s['load1_before'])])
    return lib.markdown_table(['variant', 'median s (min-max)', 'module duration s', 'time / hand (ours/hand)',
                               'time / ours (community/ours)', 'module peak RSS', 'module+tools peak RSS', 'output size',
                               'CPU s', 'foreign CPU s', 'load1 before'], rows)


def _steps_table(runs):
    if 'steps' not in runs:
        return []
    names = list(runs['steps'][0]['steps'])
    rows = [[n, '%.3f' % lib.median([r['steps'][n] for r in runs['steps']])] for n in names]
    rows.append(['manifest.json size', lib.fmt_bytes(runs['steps'][0]['manifest_size'])])
    return ['', '## In-process steps of one module run (median s)', '', lib.markdown_table(['step', 'seconds'], rows)]


def _bound(runs, meta, sha_per_gib):
    """The lower bound of ours (lib.lower_bound): the archive hashes every member (the input bytes) and the whole
    file (ours' output bytes)."""
    if not all(key in runs for key in ('ours', 'hand', 'noop')):
        return None
    output = min(r['output_size'] for r in runs['ours'])
    return lib.lower_bound(runs['hand'], runs['noop'], meta['bytes'] + output, sha_per_gib)


def _checks(runs, bound=None):
    checks = []
    if 'ours' in runs and 'hand' in runs:
        pairs = [a['seconds'] / b['seconds'] for a, b in zip(runs['ours'], runs['hand'])]
        ratio = lib.median(pairs)
        checks.append('ours / hand, end to end (median of per-round ratios %s): %.2fx, target <= %.2fx: %s' % (
            ', '.join('%.2f' % p for p in pairs), ratio, HAND_TARGET, 'PASS' if ratio <= HAND_TARGET else 'MISS'))
        mod = [a['module_duration'] / b['seconds'] for a, b in zip(runs['ours'], runs['hand']) if a.get('module_duration')]
        if mod:
            checks.append('ours module `duration` / hand (no Ansible start-up): %.2fx' % lib.median(mod))
        if bound:
            checks.append(lib.bound_text(bound, lib.median([r['seconds'] for r in runs['hand']]), HAND_TARGET))
    if 'community_gz' in runs and 'ours' in runs:
        pairs = [c['seconds'] / a['seconds'] for c, a in zip(runs['community_gz'], runs['ours'])]
        ratio = lib.median(pairs)
        checks.append('community_gz / ours (median of per-round ratios %s): %.2fx, target >= %.1fx: %s' % (
            ', '.join('%.2f' % p for p in pairs), ratio, COMMUNITY_TARGET, 'PASS' if ratio >= COMMUNITY_TARGET else 'MISS'))
    return checks


def _sweep_table(labels, summary, metas, unit):
    rows = []
    for label in labels:
        s = summary[label]
        meta = metas[label]
        rows.append([label, meta['files'], lib.fmt_bytes(meta['bytes']), '%.2f (%.2f-%.2f)' % (s['seconds'], s['min_seconds'], s['max_seconds']),
                     lib.fmt_num(s['module_duration']), lib.fmt_bytes(s['module_peak_rss']), lib.fmt_bytes(s['max_module_peak_rss']),
                     lib.fmt_bytes(s['module_tree_peak_rss']), lib.fmt_bytes(s['output_size']), lib.fmt_num(s['cpu_seconds']),
                     lib.fmt_num(s['foreign_cpu'])])
    first, last = summary[labels[0]], summary[labels[-1]]
    small, big = first['max_module_peak_rss'], last['max_module_peak_rss']
    growth = big / small if small else None
    d_files = metas[labels[-1]]['files'] - metas[labels[0]]['files']
    d_bytes = metas[labels[-1]]['bytes'] - metas[labels[0]]['bytes']
    note = 'peak RSS %s -> %s (%s, %+.1f MiB) from %s to %s: %s per 1000 files' % (
        lib.fmt_bytes(small), lib.fmt_bytes(big), lib.fmt_num(growth, '%.2fx'), (big - small) / lib.MIB, labels[0], labels[-1],
        lib.fmt_bytes((big - small) * 1000 / d_files) if d_files else '-')
    if unit == 'size' and d_bytes:
        note += ', %s per GiB of input (the file count grows with the size too)' % lib.fmt_bytes((big - small) * storagedata.GIB / d_bytes)
    table = lib.markdown_table(['input', 'files', 'bytes', 'median s (min-max)', 'module duration s', 'module peak RSS (median)',
                                'module peak RSS (max)', 'module+tools peak RSS', 'output size', 'CPU s', 'foreign CPU s'], rows)
    return table, note, growth


def _describe(facts, what):
    return ('Machine: %d CPUs (%s), %.1f GiB RAM, load average %s at start, %s at end; %s, %s, %s. %s' % (
        facts['nproc'], facts['cpu_model'], facts['mem_total_bytes'] / storagedata.GIB,
        ' '.join('%.2f' % x for x in facts['loadavg']), ' '.join('%.2f' % x for x in facts.get('loadavg_end', [])),
        facts['zstd'], facts['tar'], facts['ansible_core'], what))


def _collection_version(name):
    try:
        package = importlib.import_module('ansible_collections.%s' % name)
        return json.loads((Path(next(iter(package.__path__))) / 'MANIFEST.json').read_text())['collection_info']['version']
    except (ImportError, OSError, ValueError, KeyError, StopIteration):
        return None


def _facts(extra):
    return lib.machine_facts(dict(extra, tar=lib._first_line(['tar', '--version']),
                                  community_general=_collection_version('community.general')))


def _tree_text(meta):
    if meta['shape'] == 'mixed':
        share = meta['incompressible'] * 100
        return '%s in %d files (%.0f %% random bytes, the rest text)' % (lib.fmt_bytes(meta['bytes']), meta['files'], share)
    return '%d files of 1-20 KiB (half text, half random bytes), %s' % (meta['files'], lib.fmt_bytes(meta['bytes']))


def _run(args, name, main_tree, sweep, sweep_unit):
    """Shared body: the A/B/C comparison on the main tree, then the RSS sweep; returns (payload, markdown)."""
    started = time.monotonic()
    with ArchiveBench(args) as bench:
        tree, meta = main_tree(bench)
        facts = _facts({'data_set': meta})
        keys, runs, summary = _compare(bench, tree, args)
        bound = _bound(runs, meta, lib.sha256_cpu_per_gib())
        sweep_md, checks = [], _checks(runs, bound)
        sweep_payload = None
        if sweep and args.rss_rounds > 0:
            trees, metas = {}, {}
            for label, make in sweep:
                trees[label], metas[label] = make(bench)
            sweep_runs, sweep_summary = _rss_sweep(bench, trees, args)
            labels = list(trees)
            table, note, growth = _sweep_table(labels, sweep_summary, metas, sweep_unit)
            sweep_md = ['', '## Peak RSS of our module by input %s (%d interleaved rounds)' % (sweep_unit, args.rss_rounds), '',
                        table, '', note]
            if sweep_unit == 'size':
                checks.append('ours module peak RSS flat from %s to %s (largest <= %.2fx smallest): %s: %s' % (
                    labels[0], labels[-1], FLAT_TARGET, note, 'PASS' if growth is not None and growth <= FLAT_TARGET else 'MISS'))
            else:
                checks.append('ours module peak RSS by file count (no target; the manifest lists every member): %s' % note)
            sweep_payload = {'labels': labels, 'data_sets': metas, 'summary': sweep_summary, 'runs': strip_runs(sweep_runs)}
        facts['loadavg_end'] = list(os.getloadavg())
        facts['bench_seconds'] = round(time.monotonic() - started, 1)
    md = '\n'.join(['# %s: %s, %d interleaved rounds' % (name, _tree_text(meta), args.pairs), '',
                    _describe(facts, 'Page cache warm (an untimed hand run first).'), '', SHARED, '',
                    _main_table(keys, summary)] + _steps_table(runs) + sweep_md + ['', '## Targets', ''] +
                   ['- %s' % c for c in checks] + [''])
    log('\n' + md)
    payload = {'scenario': name, 'args': vars(args), 'facts': facts, 'summary': summary, 'checks': checks,
               'lower_bound': bound, 'runs': strip_runs(runs), 'rss_sweep': sweep_payload}
    return payload, md


def strip_runs(runs):
    out = {}
    for key, items in runs.items():
        out[key] = [{k: v for k, v in item.items() if k not in ('stderr', 'stdout')} for item in items]
    return out


def _label_gb(size_gb):
    return '%g GiB' % size_gb


def scenario_archive_mixed(args):
    sizes = sorted(args.rss_sizes_gb)
    sweep = [(_label_gb(s), (lambda b, s=s: b.mixed_tree(s))) for s in sizes]
    return _run(args, 'archive_mixed', lambda b: b.mixed_tree(args.size_gb), sweep, 'size')


def scenario_archive_small(args):
    counts = sorted(args.rss_counts)
    sweep = [('%d files' % c, (lambda b, c=c: b.small_tree(c))) for c in counts]
    return _run(args, 'archive_small', lambda b: b.small_tree(args.files), sweep, 'file count')


def add_arguments(parser):
    group = parser.add_argument_group('archive_mixed / archive_small')
    group.add_argument('--files', type=int, default=50000, help='archive_small: number of files (default 50000)')
    group.add_argument('--rss-sizes-gb', type=float, nargs='*', default=[0.1, 0.5, 1.0, 2.0],
                       help='archive_mixed: input sizes (GiB) of the peak-RSS sweep of our module (default 0.1 0.5 1 2)')
    group.add_argument('--rss-counts', type=int, nargs='*', default=[5000, 20000, 50000],
                       help='archive_small: file counts of the peak-RSS sweep (default 5000 20000 50000)')
    group.add_argument('--rss-rounds', type=int, default=3, help='rounds of the peak-RSS sweep (default 3; 0: no sweep)')
