"""A PostgreSQL server with a deterministic, realistic data set for the benchmarks.

The server is the tests' kind (initdb as the postgres OS user, fsync=off, a private socket dir, a free TCP port on
127.0.0.1 with a scram password), but lives in a fixed directory under benchmarks/data/ so that a generated data
set can be reused by the next run (``--keep-data``).

The data is generated in Python from ``random.Random`` seeded per table, and streamed into the server with COPY
... FREEZE into tables created in the same transaction with wal_level=minimal: no WAL for the rows, and no
hint-bit writes when the first dump reads them.  Tables (approximate share of the database size):

* ``customers`` (10 %) names, e-mail, country, a jsonb profile
* ``documents`` (30 %) title and a long body of words drawn from a Zipf-like vocabulary (TOASTed, pglz)
* ``events`` (25 %) small rows with a jsonb payload and a timestamp
* ``attachments`` (35 %) file name, mime type and a bytea of random bytes (1-64 KiB, incompressible)

Two tables load at a time (one per core); the same seed and size give the same rows.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# lib puts tests/ on sys.path
import lib  # noqa: F401  pylint: disable=unused-import
from harness.common import free_port, run_as
from harness.pg import SUPERUSER, pg_bin_dirs

GIB = 1024 ** 3
DB_NAME = 'benchdb'
FORMAT_VERSION = 1  # bump when the generator changes: a kept data set of another version is regenerated

# share of the target size and estimated on-disk bytes per row (calibrated on PostgreSQL 15)
TABLES = {
    'customers': (0.10, 415),
    'documents': (0.30, 2350),
    'events': (0.25, 270),
    'attachments': (0.35, 35400),
}

DDL = {
    'customers': 'id bigint NOT NULL, name text NOT NULL, email text NOT NULL, country char(2), '
                 'created_at timestamptz NOT NULL, profile jsonb',
    'documents': 'id bigint NOT NULL, customer_id bigint NOT NULL, title text NOT NULL, body text, '
                 'created_at timestamptz NOT NULL',
    'events': 'id bigint NOT NULL, customer_id bigint NOT NULL, kind text NOT NULL, payload jsonb, '
              'created_at timestamptz NOT NULL',
    'attachments': 'id bigint NOT NULL, document_id bigint NOT NULL, filename text NOT NULL, mime text NOT NULL, '
                   'content bytea',
}

POST_DDL = [
    'ALTER TABLE customers ADD PRIMARY KEY (id)',
    'ALTER TABLE documents ADD PRIMARY KEY (id)',
    'ALTER TABLE events ADD PRIMARY KEY (id)',
    'ALTER TABLE attachments ADD PRIMARY KEY (id)',
    'CREATE INDEX events_customer_created ON events (customer_id, created_at)',
    "COMMENT ON TABLE attachments IS 'random bytes: incompressible payload'",
    'VACUUM (ANALYZE, FREEZE)',
]

EPOCH = 1_600_000_000
KINDS = ['login', 'logout', 'view', 'edit', 'create', 'delete', 'share', 'export', 'comment', 'upload']
MIMES = [('pdf', 'application/pdf'), ('png', 'image/png'), ('jpg', 'image/jpeg'), ('zip', 'application/zip'),
         ('docx', 'application/vnd.openxmlformats-officedocument.wordprocessingml.document')]
COUNTRIES = ['JP', 'DE', 'US', 'FR', 'GB', 'BR', 'IN', 'CN', 'KR', 'ES', 'IT', 'NL', 'SE', 'PL', 'CA']


# -- generator ---------------------------------------------------------------------------------------------------
def _escape(text):
    return text.replace('\\', '\\\\').replace('\t', '\\t').replace('\n', '\\n').replace('\r', '\\r')


def _ts(rng):
    return time.strftime('%Y-%m-%d %H:%M:%S+00', time.gmtime(EPOCH + rng.randrange(0, 150_000_000)))


class Vocabulary:
    """Pseudo-words with Zipf-like frequencies, so text compresses like text does."""

    def __init__(self, rng, size=8000):
        syllables = [a + b for a in 'bcdfghjklmnprstvwz' for b in 'aeiouy'] + ['th', 'ch', 'st', 'qu']
        words = set()
        while len(words) < size:
            words.add(''.join(rng.choice(syllables) for _n in range(rng.choice((1, 2, 2, 3, 3, 4)))))
        self.words = sorted(words)
        rng.shuffle(self.words)
        weights, total = [], 0.0
        for rank in range(1, size + 1):
            total += 1.0 / rank
            weights.append(total)
        self.cum = weights
        self.rng = rng

    def words_(self, count):
        return self.rng.choices(self.words, cum_weights=self.cum, k=count)

    def sentence(self, count):
        return ' '.join(self.words_(count)).capitalize() + '.'


def _rows_customers(rng, vocab, start, count):
    for i in range(start, start + count):
        first, last = vocab.words_(2)
        profile = {
            'tier': rng.choice(('free', 'pro', 'enterprise')),
            'tags': vocab.words_(rng.randint(0, 6)),
            'prefs': {'lang': rng.choice(('ja', 'en', 'de', 'fr')), 'newsletter': rng.random() < 0.3,
                      'theme': rng.choice(('light', 'dark'))},
            'score': round(rng.random() * 1000, 2),
            'bio': vocab.sentence(rng.randint(5, 25)),
        }
        yield '%d\t%s %s\t%s.%s%d@example.com\t%s\t%s\t%s\n' % (
            i, first.capitalize(), last.capitalize(), first, last, i, rng.choice(COUNTRIES), _ts(rng),
            _escape(json.dumps(profile, separators=(',', ':'))))


def _rows_documents(rng, vocab, start, count, customers):
    for i in range(start, start + count):
        paragraphs = [' '.join(vocab.sentence(rng.randint(6, 20)) for _s in range(rng.randint(3, 9)))
                      for _p in range(rng.randint(2, 8))]
        yield '%d\t%d\t%s\t%s\t%s\n' % (i, rng.randrange(1, customers + 1), _escape(vocab.sentence(rng.randint(3, 9))),
                                        _escape('\n\n'.join(paragraphs)), _ts(rng))


def _rows_events(rng, vocab, start, count, customers):
    for i in range(start, start + count):
        payload = {'ip': '10.%d.%d.%d' % (rng.randrange(256), rng.randrange(256), rng.randrange(256)),
                   'ua': rng.choice(('firefox', 'chrome', 'safari', 'edge')) + '/' + str(rng.randint(80, 130)),
                   'path': '/' + '/'.join(vocab.words_(rng.randint(1, 4))),
                   'ms': rng.randint(1, 5000), 'ok': rng.random() < 0.97}
        if rng.random() < 0.3:
            payload['note'] = vocab.sentence(rng.randint(4, 30))
        yield '%d\t%d\t%s\t%s\t%s\n' % (i, rng.randrange(1, customers + 1), rng.choice(KINDS),
                                        _escape(json.dumps(payload, separators=(',', ':'))), _ts(rng))


def _rows_attachments(rng, vocab, start, count, documents):
    for i in range(start, start + count):
        ext, mime = rng.choice(MIMES)
        size = rng.randint(1024, 64 * 1024)
        document = rng.randrange(1, documents + 1)
        name = '%s.%s' % ('_'.join(vocab.words_(3)), ext)
        yield '%d\t%d\t%s\t%s\t\\\\x%s\n' % (i, document, name, mime, rng.randbytes(size).hex())


class _CopySource:
    """File-like object for COPY FROM STDIN fed by a row generator, ~1 MiB per read()."""

    def __init__(self, rows):
        self.rows = rows

    def read(self, size=-1):
        parts, total = [], 0
        for row in self.rows:
            parts.append(row)
            total += len(row)
            if total >= (1 << 20):
                break
        return ''.join(parts).encode('utf-8')

    readline = read


def row_counts(size_gb):
    target = size_gb * GIB * 1.03  # a little over: the database must be at least the size asked
    return {name: max(100, int(target * share / per_row)) for name, (share, per_row) in TABLES.items()}


def _load_table(conninfo, table, seed, counts, *, batch=0, start=1, count=None):
    import psycopg2  # only the loader processes need the driver

    rng = random.Random('%s:%s:%d' % (seed, table, batch))
    vocab = Vocabulary(random.Random('%s:vocabulary' % seed))
    vocab.rng = rng
    count = count or counts[table]
    if table == 'customers':
        rows = _rows_customers(rng, vocab, start, count)
    elif table == 'documents':
        rows = _rows_documents(rng, vocab, start, count, counts['customers'])
    elif table == 'events':
        rows = _rows_events(rng, vocab, start, count, counts['customers'])
    else:
        rows = _rows_attachments(rng, vocab, start, count, counts['documents'])
    started = time.monotonic()
    conn = psycopg2.connect(conninfo)
    try:
        with conn.cursor() as cur:
            if batch == 0:  # created in the loading transaction: with wal_level=minimal, COPY writes no WAL
                cur.execute('DROP TABLE IF EXISTS %s' % table)
                cur.execute('CREATE TABLE %s (%s)' % (table, DDL[table]))
                cur.copy_expert('COPY %s FROM STDIN WITH (FREEZE)' % table, _CopySource(rows), size=1 << 20)
            else:
                cur.copy_expert('COPY %s FROM STDIN' % table, _CopySource(rows), size=1 << 20)
        conn.commit()
    finally:
        conn.close()
    return table, count, time.monotonic() - started


# -- server --------------------------------------------------------------------------------------------------
class BenchServer:
    """PostgreSQL server in ``root`` (created, or reused when it holds a finished data set of the same kind)."""

    def __init__(self, root, seed, size_gb, major=None, log=print):
        dirs = pg_bin_dirs()
        if not dirs:
            raise RuntimeError('no PostgreSQL server installed under /usr/lib/postgresql (run make deps)')
        self.major = major or next(iter(dirs))
        self.bin_dir = dirs[self.major]
        self.root = Path(root)
        self.data = self.root / 'data'
        self.socket_dir = self.root / 'sock'
        self.meta_path = self.root / 'bench.json'
        self.seed = seed
        self.size_gb = size_gb
        self.password = 'bench-%s' % seed
        self.port = None
        self.log = log
        self.os_user = 'postgres' if os.geteuid() == 0 else None
        self.meta = None
        self.generated = False

    def _want(self):
        return {'format': FORMAT_VERSION, 'seed': self.seed, 'size_gb': self.size_gb, 'major': self.major}

    def usable(self):
        try:
            meta = json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return False
        return all(meta.get(k) == v for k, v in self._want().items()) and meta.get('complete')

    def _run(self, argv, check=True):
        return run_as(self.os_user, argv, check=check)

    def _chown(self, path):
        if self.os_user:
            shutil.chown(path, self.os_user)

    def _start(self):
        self.port = free_port()
        opts = ('-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off '
                '-c max_connections=40 -c shared_buffers=128MB -c max_wal_size=4GB -c wal_level=minimal '
                '-c max_wal_senders=0 -c maintenance_work_mem=512MB -c autovacuum=off' % (self.port, self.socket_dir))
        self._run([self.bin_dir + '/pg_ctl', '-D', str(self.data), '-o', opts, '-l', str(self.root / 'log'), '-w', 'start'])

    def start(self):
        """Start the server; generate the data set unless a finished one is there."""
        if self.usable():
            self.log('reusing the data set in %s' % self.root)
            (self.data / 'postmaster.pid').unlink(missing_ok=True)
            self._start()
            self.meta = json.loads(self.meta_path.read_text())
            self.drop_leftovers()
            return self
        if self.root.exists():
            self.log('discarding %s (incomplete or of another seed/size/version)' % self.root)
            self.stop(remove=True)
        self.root.mkdir(parents=True)
        self.socket_dir.mkdir()
        pwfile = self.root / 'pwfile'
        pwfile.write_text(self.password + '\n')
        for path in (self.root, self.socket_dir, pwfile):
            self._chown(path)
        self._run([self.bin_dir + '/initdb', '-D', str(self.data), '-U', SUPERUSER, '--pwfile', str(pwfile),
                   '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync'])
        pwfile.unlink()
        self._start()
        self.generate()
        return self

    def stop(self, remove=False):
        if (self.data / 'postmaster.pid').exists():
            self._run([self.bin_dir + '/pg_ctl', '-D', str(self.data), '-m', 'fast', '-w', 'stop'], check=False)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- access ----------------------------------------------------------------------------------------------
    def conninfo(self, db=DB_NAME):
        return 'host=127.0.0.1 port=%d user=%s password=%s dbname=%s' % (self.port, SUPERUSER, self.password, db)

    def env(self, db=DB_NAME):
        """libpq environment for a TCP connection with the password (for baselines run by hand)."""
        return {'PGHOST': '127.0.0.1', 'PGPORT': str(self.port), 'PGUSER': SUPERUSER, 'PGPASSWORD': self.password,
                'PGDATABASE': db}

    def drop_leftovers(self):
        """Drop the databases an interrupted run or a probe left beside the data set: they compete with it for the
        page cache and shared buffers (as mysqldata.BenchServer.drop_leftovers)."""
        for name in self.psql('SELECT datname FROM pg_database WHERE NOT datistemplate', 'postgres').split():
            if name not in (DB_NAME, 'postgres'):
                self.log('dropping the leftover database %s' % name)
                self.psql('DROP DATABASE "%s" WITH (FORCE)' % name, 'postgres')

    def psql(self, sql, db=DB_NAME):
        argv = [self.bin_dir + '/psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', str(self.socket_dir),
                '-p', str(self.port), '-U', SUPERUSER, '-d', db, '-c', sql]
        return self._run(argv).stdout.strip()

    def postmaster_pid(self):
        try:
            return int((self.data / 'postmaster.pid').read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def version(self):
        return self.psql('SHOW server_version', 'postgres').split()[0]

    def database_size(self, db=DB_NAME):
        return int(self.psql("SELECT pg_database_size('%s')" % db, 'postgres'))

    # -- generation --------------------------------------------------------------------------------------------
    def generate(self):
        started = time.monotonic()
        self.psql('CREATE DATABASE %s' % DB_NAME, 'postgres')
        counts = row_counts(self.size_gb)
        self.log('generating %.2f GiB (seed %s): %s' % (self.size_gb, self.seed, counts))
        order = ['attachments', 'documents', 'events', 'customers']  # longest first: two loaders stay busy
        with ProcessPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(_load_table, self.conninfo(), t, self.seed, counts) for t in order]
            for future in futures:
                table, count, seconds = future.result()
                self.log('  %-12s %9d rows  %6.1f s' % (table, count, seconds))
        target = int(self.size_gb * GIB)
        next_id, batch = counts['attachments'] + 1, 0
        while self.database_size() < target:  # the estimates fell short: top up with more attachments, deterministically
            batch += 1
            extra = max(100, int((target - self.database_size()) * 1.05 / TABLES['attachments'][1]))
            self.log('  top-up %d: %d more attachments' % (batch, extra))
            _load_table(self.conninfo(), 'attachments', self.seed, counts, batch=batch, start=next_id, count=extra)
            next_id += extra
        for sql in POST_DDL:
            self.psql(sql)
        size = self.database_size()
        rows = {t: int(self.psql('SELECT count(*) FROM %s' % t)) for t in TABLES}
        self.meta = dict(self._want(), complete=True, database=DB_NAME, database_size=size, rows=rows,
                         generation_seconds=round(time.monotonic() - started, 1))
        self.meta_path.write_text(json.dumps(self.meta, indent=2) + '\n')
        self.generated = True
        self.log('generated %s bytes (%.2f GiB) in %.0f s' % (size, size / GIB, self.meta['generation_seconds']))
        return self.meta
