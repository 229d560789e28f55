"""How archive_create's Python heap grows with the number of members: it should not.

    .venv/bin/python benchmarks/archive_memory.py benchmarks/data/storage-small-appvault-1-50000/storage [more trees]

Runs create()'s first pass in-process (walk, sha256 of every file, member table spooled to disk, manifest
assembled from the spool) under tracemalloc for each tree and prints its member count, the heap's peak during the
pass, and the peak per member. A member table held in memory shows as a per-member cost of hundreds of bytes and
a peak that grows with the tree; the streamed table keeps the peak flat. Prints one JSON document (``--out``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'build' / 'collections'))

from ansible_collections.appvault.backup.plugins.module_utils import _archive, _catalog, _common


def first_pass(tree):
    """Walk, hash, spool and write the manifest of ``tree``; the heap's peak and the time it took."""
    sources, _warnings = _archive.plan_sources([], [{'id': 'storage', 'path': os.path.abspath(tree)}])
    stats, warnings = {}, []
    gc.collect()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    with _common.SecretDir() as secrets:
        spool = _archive.Spool(secrets, [s['member'] for s in sources])
        spool.fill(_archive.describe(_archive.walk(sources, stats, warnings), _common.cpu_count()))
        manifest = _archive.build_manifest({'name': 'bench'}, _catalog.utc_now(), None, sources, stats, spool.tops, 'zstd', 3,
                                           None, warnings)
        manifest_path = secrets.write('manifest.json', '')
        spool.write_manifest(manifest_path, manifest)
        manifest_bytes = os.path.getsize(manifest_path)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] - before
    return {'tree': os.path.abspath(tree), 'members': spool.count, 'bytes': sum(c['bytes'] for c in stats.values()),
            'manifest_bytes': manifest_bytes, 'seconds': round(seconds, 3), 'heap_peak_bytes': peak,
            'heap_peak_per_member': round(peak / max(spool.count, 1), 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('trees', nargs='+', help='directories to walk (archive sources)')
    parser.add_argument('--out', help='also write the JSON here')
    args = parser.parse_args(argv)
    tracemalloc.start()
    report = {'runs': [first_pass(tree) for tree in args.trees]}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
