"""Deterministic application storage trees for the archive benchmarks.

Two shapes, both under ``<dir>/storage`` like a Laravel/Exment application's ``storage/``:

* ``mixed`` (``generate_mixed``): ``size`` bytes, 70 % incompressible (random bytes: uploaded images, PDFs,
  zips, plugin bundles) and 30 % text (log-like lines in ``logs/``, Zipf-like word text in plugin sources, cache and
  exports), files from a few KiB to tens of MiB in nested directories::

      storage/app/admin/attachments/<yyyy>/<mm>/<n>.<bin ext>      random bytes, 4 KiB - 48 MiB (log-uniform)
      storage/app/plugins/<plugin>/{src,assets,lang}/...           text (source-like) and random-byte assets
      storage/app/exports/<n>.csv                                  text
      storage/logs/laravel-<date>.log, storage/logs/worker/...     log lines, 64 KiB - 24 MiB
      storage/framework/cache/data/<xx>/<yy>/<hash>                text, 1-64 KiB

* ``small`` (``generate_small``): ``count`` files of 1-20 KiB (half text, half random bytes) spread over
  ``storage/app/admin/files/<a>/<b>/`` (about 25 files per directory) plus a few plugin and cache directories.

``random.Random(seed)`` drives everything (names, sizes, content), so the same seed and size give byte-identical
trees; mtimes are set to fixed values too.  A tree is written next to a ``meta.json`` (seed, size, generator
version, file count, bytes) and reused when one with the same parameters exists.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import shutil
import time
from pathlib import Path

FORMAT_VERSION = 1  # bump when the generator changes: a kept tree of another version is regenerated
MIB = 1024 * 1024
GIB = 1024 * MIB
BASE_MTIME = 1735689600  # 2025-01-01T00:00:00Z

_SYLLABLES = ['ka', 'to', 'ri', 'ne', 'mo', 'sa', 'lu', 'te', 'vi', 'po', 'da', 'ex', 'ment', 'ion', 'er', 'al',
              'ing', 'st', 'qu', 'or', 'an', 'is', 'co', 'de', 'pre', 'un', 'ble', 'ty', 'ver', 'ch']
LEVELS = ['DEBUG', 'INFO', 'INFO', 'INFO', 'NOTICE', 'WARNING', 'ERROR']
CHANNELS = ['local', 'production', 'worker', 'scheduler', 'plugin']
BIN_EXT = ['.png', '.jpg', '.pdf', '.zip', '.xlsx', '.docx', '.gif', '.bin']


def _vocabulary(rng, size=6000):
    words = set()
    while len(words) < size:
        words.add(''.join(rng.choice(_SYLLABLES) for _n in range(rng.randint(1, 4))))
    words = sorted(words)
    rng.shuffle(words)
    cum = list(itertools.accumulate(1.0 / (rank + 1) ** 1.1 for rank in range(len(words))))  # Zipf-like
    return words, cum


class TextSource:
    """Word text and log lines of (about) a requested size, from one seeded generator."""

    def __init__(self, rng):
        self.rng = rng
        self.words, self.cum = _vocabulary(rng)

    def _words(self, count):
        return self.rng.choices(self.words, cum_weights=self.cum, k=count)

    def prose(self, size):
        out, total = [], 0
        while total < size:
            words = self._words(4000)
            lines = [' '.join(words[i:i + 12]) for i in range(0, len(words), 12)]
            block = ('\n'.join(lines) + '\n').encode()
            out.append(block)
            total += len(block)
        return b''.join(out)[:size]

    def log(self, size, start):
        """Laravel-style log lines with increasing timestamps, levels, request ids and word messages."""
        rng = self.rng
        out, total, clock = [], 0, float(start)
        while total < size:
            words = self._words(3000)
            lines, index = [], 0
            while index < len(words):
                clock += rng.expovariate(2.0)
                count = rng.randint(4, 20)
                stamp = time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(clock))
                line = '[%s] %s.%s: %s {"request_id":"%08x","user_id":%d,"ms":%d}' % (
                    stamp, rng.choice(CHANNELS), rng.choice(LEVELS), ' '.join(words[index:index + count]),
                    rng.getrandbits(32), rng.randint(1, 5000), rng.randint(1, 3000))
                lines.append(line)
                index += count
            block = ('\n'.join(lines) + '\n').encode()
            out.append(block)
            total += len(block)
        return b''.join(out)[:size]


def _log_uniform(rng, low, high):
    return int(math.exp(rng.uniform(math.log(low), math.log(high))))


def _write(path, data, mtime):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'wb') as fileobj:
        fileobj.write(data)
    os.utime(path, (mtime, mtime))


def _finish(tree, meta):
    # fixed directory mtimes, deepest first (writing a file changes its directory's mtime)
    for dirpath, _dirs, _files in sorted(os.walk(tree / 'storage'), key=lambda item: -item[0].count('/')):
        os.utime(dirpath, (BASE_MTIME, BASE_MTIME))
    (tree / 'meta.json').write_text(json.dumps(meta, indent=1, sort_keys=True) + '\n')


def _cached(tree, meta):
    try:
        found = json.loads((tree / 'meta.json').read_text())
    except (OSError, ValueError):
        return None
    if all(found.get(k) == v for k, v in meta.items()):
        return found
    return None


def generate_mixed(tree, size, seed, incompressible=0.70, log=print):
    """Write a ``mixed`` tree of ``size`` bytes under ``tree/storage``; returns its meta dict (reused if present)."""
    tree = Path(tree)
    meta = {'shape': 'mixed', 'seed': seed, 'size': int(size), 'incompressible': incompressible,
            'format_version': FORMAT_VERSION}
    found = _cached(tree, meta)
    if found:
        return dict(found, generated=False)
    shutil.rmtree(tree, ignore_errors=True)
    started = time.monotonic()
    log('generating mixed storage tree %s (%.2f GiB, seed %s)' % (tree, size / GIB, seed))
    rng = random.Random('%s/mixed/%d' % (seed, size))
    text = TextSource(random.Random('%s/text/%d' % (seed, size)))
    blob = random.Random('%s/bytes/%d' % (seed, size))
    root = tree / 'storage'
    files = nbytes = 0
    plugins = ['%s-%s' % (rng.choice(['exment', 'custom', 'acme', 'report']), ''.join(rng.choice(_SYLLABLES) for _n in range(2)))
               for _p in range(8)]

    def attachment():
        day = rng.randint(0, 729)
        return root / 'app/admin/attachments' / time.strftime('%Y/%m', time.gmtime(BASE_MTIME - day * 86400)) / (
            '%08x%s' % (rng.getrandbits(32), rng.choice(BIN_EXT)))

    def asset():
        return root / 'app/plugins' / rng.choice(plugins) / 'assets' / ('%06x%s' % (rng.getrandbits(24), rng.choice(BIN_EXT)))

    def logfile():
        stamp = BASE_MTIME - rng.randint(1, 1500) * 86400
        name = 'laravel-%s-%04x.log' % (time.strftime('%Y-%m-%d', time.gmtime(stamp)), rng.getrandbits(16))
        return root / 'logs' / (name if rng.random() < 0.7 else 'worker/' + name)

    def export():
        return root / 'app/exports' / ('export-%06x.csv' % rng.getrandbits(24))

    def source():
        return root / 'app/plugins' / rng.choice(plugins) / rng.choice(['src', 'src/Http', 'lang/ja', 'views']) / (
            '%s-%04x.php' % (''.join(rng.choice(_SYLLABLES) for _n in range(3)), rng.getrandbits(16)))

    def cache():
        key = '%040x' % rng.getrandbits(160)
        return root / 'framework/cache/data' / key[:2] / key[2:4] / key

    def random_bytes(count):
        return blob.randbytes(count)

    budget_bin = int(size * incompressible)
    budget_text = int(size) - budget_bin
    # (share of the bytes, smallest, largest file (log-uniform), where, content)
    categories = [
        (budget_bin * 0.15, 4 * 1024, 1 * MIB, attachment, random_bytes),     # thumbnails, small uploads
        (budget_bin * 0.70, 1 * MIB, 48 * MIB, attachment, random_bytes),     # PDFs, images, zips
        (budget_bin * 0.15, 4 * 1024, 16 * MIB, asset, random_bytes),         # plugin bundles
        (budget_text * 0.65, 64 * 1024, 24 * MIB, logfile, None),             # logs
        (budget_text * 0.15, 16 * 1024, 8 * MIB, export, text.prose),         # csv exports
        (budget_text * 0.10, 2 * 1024, 256 * 1024, source, text.prose),       # plugin sources
        (budget_text * 0.10, 1024, 64 * 1024, cache, text.prose),             # framework cache
    ]
    for budget, low, high, where, content in categories:
        used = 0
        budget = int(budget)
        while used < budget:
            size_one = min(_log_uniform(rng, low, high), budget - used)
            path = where()
            mtime = BASE_MTIME - rng.randint(0, 86400 * 700)
            data = text.log(size_one, mtime - 86400) if content is None else content(size_one)
            _write(path, data, mtime)
            used += size_one
            files += 1
        nbytes += used
    if nbytes < size:  # rounding of the shares: top up with one random file
        _write(attachment(), blob.randbytes(int(size) - nbytes), BASE_MTIME)
        files += 1
        nbytes = int(size)
    meta.update(files=files, bytes=nbytes, generate_seconds=round(time.monotonic() - started, 1))
    _finish(tree, meta)
    log('  %d files, %d bytes in %.1f s' % (files, nbytes, meta['generate_seconds']))
    return dict(meta, generated=True)


def generate_small(tree, count, seed, log=print):
    """Write ``count`` files of 1-20 KiB (half text, half random bytes) under ``tree/storage``; returns its meta."""
    tree = Path(tree)
    meta = {'shape': 'small', 'seed': seed, 'count': int(count), 'format_version': FORMAT_VERSION}
    found = _cached(tree, meta)
    if found:
        return dict(found, generated=False)
    shutil.rmtree(tree, ignore_errors=True)
    started = time.monotonic()
    log('generating small-file storage tree %s (%d files, seed %s)' % (tree, count, seed))
    rng = random.Random('%s/small/%d' % (seed, count))
    text = TextSource(random.Random('%s/small-text/%d' % (seed, count)))
    blob = random.Random('%s/small-bytes/%d' % (seed, count))
    root = tree / 'storage'
    nbytes = 0
    for index in range(count):
        size_one = rng.randint(1024, 20 * 1024)
        where = rng.random()
        if where < 0.85:
            path = root / 'app/admin/files' / ('%02x' % rng.randrange(45)) / ('%02x' % rng.randrange(45)) / ('f%06d' % index)
        elif where < 0.95:
            key = '%040x' % rng.getrandbits(160)
            path = root / 'framework/cache/data' / key[:2] / key[2:4] / key
        else:
            path = root / 'app/plugins' / ('plugin-%d' % rng.randrange(12)) / 'src' / ('f%06d.php' % index)
        if rng.random() < 0.5:
            data = blob.randbytes(size_one)
            path = path.with_name(path.name + rng.choice(BIN_EXT))
        else:
            data = text.prose(size_one)
        _write(path, data, BASE_MTIME - rng.randint(0, 86400 * 700))
        nbytes += size_one
    meta.update(files=count, bytes=nbytes, generate_seconds=round(time.monotonic() - started, 1))
    _finish(tree, meta)
    log('  %d files, %d bytes in %.1f s' % (count, nbytes, meta['generate_seconds']))
    return dict(meta, generated=True)
