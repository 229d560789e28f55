"""Where archive_create's memory and Python time go per member: walk, member_table, build_manifest, manifest JSON.

    .venv/bin/python benchmarks/archive_memory.py benchmarks/data/storage-small-appvault-1-50000/storage

Calls the module_utils in-process (no Ansible, nothing written but a temp manifest) under tracemalloc and prints,
per step, the seconds, the Python heap it leaves allocated and its transient peak, each also per member; then the
same for alternative ways of serialising the manifest (the module uses ``json.dumps(indent=1, sort_keys=True)``,
which the json module runs in its pure-Python encoder and collects as a list of small strings before joining).
Prints one JSON document (also written with ``--out``).
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'build' / 'collections'))

from ansible_collections.appvault.backup.plugins.module_utils import _archive, _catalog, _manifest


def step(name, func, results, members=None):
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    started = time.perf_counter()
    value = func()
    seconds = time.perf_counter() - started
    after, peak = tracemalloc.get_traced_memory()
    entry = {'seconds': round(seconds, 4), 'retained_bytes': after - before, 'transient_peak_bytes': peak - before}
    if members:
        entry['retained_per_member'] = round((after - before) / members)
        entry['transient_peak_per_member'] = round((peak - before) / members)
    results[name] = entry
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('tree', help='directory to walk (the archive source)')
    parser.add_argument('--out', help='also write the JSON here')
    args = parser.parse_args(argv)
    tracemalloc.start()
    results = {}
    sources, _w = _archive.plan_sources([], [{'id': 'storage', 'path': os.path.abspath(args.tree)}])
    entries, stats, warnings, inodes = step('walk', lambda: _archive.walk(sources), results)
    count = len(entries)
    for value in results.values():
        value['retained_per_member'] = round(value['retained_bytes'] / count)
        value['transient_peak_per_member'] = round(value['transient_peak_bytes'] / count)
    members = step('member_table (hash pass)', lambda: _archive.member_table(entries, inodes), results, count)
    manifest = step('build_manifest', lambda: _archive.build_manifest({'name': 'bench'}, _catalog.utc_now(), None, sources, stats,
                                                                      members, 'zstd', 3, None, warnings), results, count)
    data = step('manifest JSON: _manifest.dumps (indent=1, sort_keys; pure-Python encoder)', lambda: _manifest.dumps(manifest),
                results, count)
    size = len(data)
    del data
    compact = step('alternative: json.dumps(sort_keys, separators=(",", ":")) (C encoder)',
                   lambda: json.dumps(manifest, sort_keys=True, separators=(',', ':'), ensure_ascii=False).encode('utf-8'),
                   results, count)
    compact_size = len(compact)
    del compact

    def to_file():
        with tempfile.TemporaryFile() as fileobj:
            writer = io.TextIOWrapper(fileobj, encoding='utf-8')
            json.dump(manifest, writer, indent=1, sort_keys=True, ensure_ascii=False)
            writer.flush()
            writer.detach()

    step('alternative: json.dump(indent=1) streamed to the file', to_file, results, count)
    report = {'tree': os.path.abspath(args.tree), 'members': count, 'files': sum(1 for e in entries if e[3] == 'file'),
              'manifest_bytes': size, 'manifest_bytes_compact': compact_size, 'steps': results,
              'python_heap_peak_bytes': tracemalloc.get_traced_memory()[1]}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
