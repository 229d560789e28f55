"""A MariaDB server with a deterministic, realistic data set for the benchmarks.

The server is the tests' kind (``mariadb-install-db`` and ``mariadbd`` as the mysql OS user, a private socket, a free
TCP port on 127.0.0.1, root with a password for 127.0.0.1), but lives in a fixed directory under benchmarks/data/
so that a generated data set can be reused by the next run (``--keep-data``).  It runs without a binary log (so
a restore costs every variant the same, whether or not it can ``SET sql_log_bin = 0``), with
``innodb_flush_log_at_trx_commit=0``, no doublewrite and a 2 GiB buffer pool: a 1 GiB database is dumped from
memory, as a hot database is.

The data is generated in Python from ``random.Random`` seeded per table and chunk, written as tab-separated chunk
files (~64 MiB) and loaded with ``LOAD DATA LOCAL INFILE`` through the ``mariadb`` client (unique and foreign key
checks off), two tables at a time (one per core); the secondary index is built afterwards.  Tables (approximate
share of the database size):

* ``customers`` (10 %) names, e-mail, country, a JSON profile
* ``documents`` (30 %) title and a long body of words drawn from a Zipf-like vocabulary (LONGTEXT)
* ``events`` (25 %) small rows with a JSON payload and a timestamp
* ``attachments`` (35 %) file name, mime type and a LONGBLOB of random bytes (1-64 KiB, incompressible)

plus a view, a stored function and a trigger, so ``--routines --triggers`` have something to carry.  The same
seed and size give the same rows.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# lib puts tests/ on sys.path
import lib  # noqa: F401  pylint: disable=unused-import
from harness.common import free_port, run_as
from harness.mysql import CLIENT, INSTALL_DB, MARIADBD, SUPERUSER
from pgdata import COUNTRIES, KINDS, MIMES, Vocabulary

GIB = 1024 ** 3
DB_NAME = 'benchdb'
FORMAT_VERSION = 1  # bump when the generator changes: a kept data set of another version is regenerated
CHUNK_BYTES = 64 << 20

# share of the target size and estimated on-disk bytes per row (calibrated on MariaDB 10.11, InnoDB DYNAMIC)
TABLES = {
    'customers': (0.10, 480),
    'documents': (0.30, 2500),
    'events': (0.25, 300),
    'attachments': (0.35, 35500),
}

DDL = {
    'customers': 'id BIGINT NOT NULL PRIMARY KEY, name VARCHAR(200) NOT NULL, email VARCHAR(255) NOT NULL, country CHAR(2), '
                 'created_at DATETIME NOT NULL, profile JSON',
    'documents': 'id BIGINT NOT NULL PRIMARY KEY, customer_id BIGINT NOT NULL, title VARCHAR(500) NOT NULL, body LONGTEXT, '
                 'created_at DATETIME NOT NULL',
    'events': 'id BIGINT NOT NULL PRIMARY KEY, customer_id BIGINT NOT NULL, kind VARCHAR(20) NOT NULL, payload JSON, '
              'created_at DATETIME NOT NULL',
    'attachments': "id BIGINT NOT NULL PRIMARY KEY, document_id BIGINT NOT NULL, filename VARCHAR(255) NOT NULL, "
                   "mime VARCHAR(100) NOT NULL, content LONGBLOB",
}
TABLE_OPTIONS = {'attachments': "COMMENT='random bytes: incompressible payload'"}
COLUMNS = {
    'customers': '(id, name, email, country, created_at, profile)',
    'documents': '(id, customer_id, title, body, created_at)',
    'events': '(id, customer_id, kind, payload, created_at)',
    'attachments': '(id, document_id, filename, mime, @content) SET content = UNHEX(@content)',
}

POST_DDL = [
    'CREATE INDEX events_customer_created ON events (customer_id, created_at)',
    'CREATE OR REPLACE VIEW customer_activity AS SELECT c.id, c.name, COUNT(e.id) AS events '
    'FROM customers c LEFT JOIN events e ON e.customer_id = c.id GROUP BY c.id, c.name',
    'CREATE OR REPLACE FUNCTION attachment_kib(n BIGINT) RETURNS BIGINT DETERMINISTIC RETURN CEIL(n / 1024)',
    'CREATE OR REPLACE TRIGGER documents_touch BEFORE UPDATE ON documents FOR EACH ROW SET NEW.created_at = NOW()',
    'ANALYZE TABLE customers, documents, events, attachments',
]

EPOCH = 1_600_000_000


# -- generator ---------------------------------------------------------------------------------------------------
def _escape(text):
    return text.replace('\\', '\\\\').replace('\t', '\\t').replace('\n', '\\n').replace('\r', '\\r')


def _ts(rng):
    return time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(EPOCH + rng.randrange(0, 150_000_000)))


def _rows_customers(rng, vocab, start, count, _counts):
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


def _rows_documents(rng, vocab, start, count, counts):
    for i in range(start, start + count):
        paragraphs = [' '.join(vocab.sentence(rng.randint(6, 20)) for _s in range(rng.randint(3, 9)))
                      for _p in range(rng.randint(2, 8))]
        yield '%d\t%d\t%s\t%s\t%s\n' % (i, rng.randrange(1, counts['customers'] + 1), _escape(vocab.sentence(rng.randint(3, 9))),
                                        _escape('\n\n'.join(paragraphs)), _ts(rng))


def _rows_events(rng, vocab, start, count, counts):
    for i in range(start, start + count):
        payload = {'ip': '10.%d.%d.%d' % (rng.randrange(256), rng.randrange(256), rng.randrange(256)),
                   'ua': rng.choice(('firefox', 'chrome', 'safari', 'edge')) + '/' + str(rng.randint(80, 130)),
                   'path': '/' + '/'.join(vocab.words_(rng.randint(1, 4))),
                   'ms': rng.randint(1, 5000), 'ok': rng.random() < 0.97}
        if rng.random() < 0.3:
            payload['note'] = vocab.sentence(rng.randint(4, 30))
        yield '%d\t%d\t%s\t%s\t%s\n' % (i, rng.randrange(1, counts['customers'] + 1), rng.choice(KINDS),
                                        _escape(json.dumps(payload, separators=(',', ':'))), _ts(rng))


def _rows_attachments(rng, vocab, start, count, counts):
    for i in range(start, start + count):
        ext, mime = rng.choice(MIMES)
        document = rng.randrange(1, counts['documents'] + 1)
        name = '%s.%s' % ('_'.join(vocab.words_(3)), ext)
        content = rng.randbytes(rng.randint(1024, 64 * 1024)).hex()
        yield '%d\t%d\t%s\t%s\t%s\n' % (i, document, name, mime, content)


ROWS = {'customers': _rows_customers, 'documents': _rows_documents, 'events': _rows_events,
        'attachments': _rows_attachments}


def row_counts(size_gb):
    target = size_gb * GIB * 1.03  # a little over: the database must be at least the size asked
    return {name: max(100, int(target * share / per_row)) for name, (share, per_row) in TABLES.items()}


def _load_table(client_argv, scratch, table, seed, counts, *, batch=0, start=1, count=None):
    """Generate ``table`` in ~64 MiB chunk files and LOAD DATA LOCAL INFILE each one (runs in a worker process)."""
    rng = random.Random('%s:%s:%d' % (seed, table, batch))
    vocab = Vocabulary(random.Random('%s:vocabulary' % seed))
    vocab.rng = rng
    count = count or counts[table]
    rows = ROWS[table](rng, vocab, start, count, counts)
    path = Path(scratch) / ('%s-%d.tsv' % (table, batch))
    started = time.monotonic()
    done = False
    while not done:
        written = 0
        with open(path, 'w', encoding='utf-8') as fileobj:
            for row in rows:
                fileobj.write(row)
                written += len(row)
                if written >= CHUNK_BYTES:
                    break
            else:
                done = True
        if written:
            sql = ("SET unique_checks = 0; SET foreign_key_checks = 0; LOAD DATA LOCAL INFILE '%s' INTO TABLE %s "
                   "CHARACTER SET utf8mb4 %s" % (path, table, COLUMNS[table]))
            subprocess.run(client_argv + ['--local-infile=1', '-e', sql, DB_NAME], check=True, capture_output=True)
    path.unlink(missing_ok=True)
    return table, count, time.monotonic() - started


# -- server --------------------------------------------------------------------------------------------------
class BenchServer:
    """MariaDB server in ``root`` (created, or reused when it holds a finished data set of the same kind)."""

    def __init__(self, root, seed, size_gb, log=print):
        if not os.path.exists(MARIADBD):
            raise RuntimeError('%s is not installed (run make deps: mariadb-server)' % MARIADBD)
        self.root = Path(root).resolve()
        self.data = self.root / 'data'
        self.socket = self.root / 'mysqld.sock'
        self.pidfile = self.root / 'mysqld.pid'
        self.errlog = self.root / 'error.log'
        self.meta_path = self.root / 'bench.json'
        self.seed = seed
        self.size_gb = size_gb
        self.password = 'bench-%s' % seed
        self.port = None
        self.log = log
        self.os_user = 'mysql' if os.geteuid() == 0 else None
        self.meta = None
        self.generated = False
        self.option_file = self.root.parent / ('my-client-%d.cnf' % os.getpid())

    def _want(self):
        return {'format': FORMAT_VERSION, 'seed': self.seed, 'size_gb': self.size_gb}

    def usable(self):
        try:
            meta = json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return False
        return all(meta.get(k) == v for k, v in self._want().items()) and meta.get('complete')

    def _spawn(self):
        self.port = free_port()
        argv = [MARIADBD, '--no-defaults', '--datadir=%s' % self.data, '--port=%d' % self.port, '--bind-address=127.0.0.1',
                '--socket=%s' % self.socket, '--pid-file=%s' % self.pidfile, '--log-error=%s' % self.errlog,
                '--skip-name-resolve', '--skip-log-bin', '--innodb-buffer-pool-size=2G', '--innodb-log-file-size=1G',
                '--innodb-log-buffer-size=64M', '--innodb-flush-log-at-trx-commit=0', '--innodb-doublewrite=0',
                '--max-allowed-packet=1G', '--character-set-server=utf8mb4', '--collation-server=utf8mb4_unicode_ci',
                '--max-connections=40', '--local-infile=1']
        if self.os_user:
            argv.append('--user=%s' % self.os_user)
        # setsid -f: the server is not our child (the harness reaps every child after each run; see lib.reap_orphans)
        subprocess.run(['setsid', '-f'] + argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.socket.exists() and self._ping():
                break
            time.sleep(0.2)
        else:
            raise RuntimeError('mariadbd did not start: %s' % self.errlog.read_text()[-3000:])
        self.option_file.write_text('[client]\npassword=%s\n' % self.password)
        os.chmod(self.option_file, 0o600)

    def _ping(self):
        for password in (self.password, None):  # before and after the root password is set
            env = dict(os.environ)
            env.pop('MYSQL_PWD', None)
            if password:
                env['MYSQL_PWD'] = password
            if subprocess.run(self._socket_argv() + ['-e', 'SELECT 1'], capture_output=True, check=False, env=env).returncode == 0:
                return True
        return False

    def _socket_argv(self):
        return [CLIENT, '--no-defaults', '--socket=%s' % self.socket, '-u', SUPERUSER]

    def start(self):
        """Start the server; generate the data set unless a finished one is there."""
        if self.usable():
            self.log('reusing the data set in %s' % self.root)
            self.pidfile.unlink(missing_ok=True)
            self.socket.unlink(missing_ok=True)
            self._spawn()
            self.meta = json.loads(self.meta_path.read_text())
            self.drop_leftovers()
            return self
        if self.root.exists():
            self.log('discarding %s (incomplete or of another seed/size/version)' % self.root)
            self.stop(remove=True)
        self.root.mkdir(parents=True)
        os.chmod(self.root, 0o755)  # noqa: S103  the server runs as the mysql OS user and must reach its datadir
        if self.os_user:
            shutil.chown(self.root, self.os_user)
        run_as(self.os_user or 'root', [INSTALL_DB, '--no-defaults', '--auth-root-authentication-method=normal',
                                        '--datadir=%s' % self.data, '--user=%s' % (self.os_user or os.environ.get('USER', 'root')),
                                        '--skip-test-db', '--skip-name-resolve'])
        self._spawn()
        quoted = "'%s'" % self.password
        subprocess.run(self._socket_argv() + ['-e', "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; "
                                              "ALTER USER 'root'@'localhost' IDENTIFIED BY %s; "
                                              "ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY %s; "
                                              "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES"
                                              % (quoted, quoted)], check=True, capture_output=True)
        self.generate()
        return self

    def drop_leftovers(self):
        """Drop the databases an interrupted run or a probe left beside the data set: they share the buffer pool with
        it, so a dump reads from disk what it read from memory (an 853 MB leftover made every S3 variant 1.3-1.9x
        slower, ours most)."""
        names = self.sql('SHOW DATABASES').split()
        for name in names:
            if name not in (DB_NAME, 'Database', 'information_schema', 'mysql', 'performance_schema', 'sys'):
                self.log('dropping the leftover database %s' % name)
                self.sql('DROP DATABASE `%s`' % name)

    def stop(self, remove=False):
        pid = self.pid()
        if pid:
            os.kill(pid, 15)
            deadline = time.time() + 120
            while os.path.exists('/proc/%s' % pid) and time.time() < deadline:
                time.sleep(0.2)
        self.option_file.unlink(missing_ok=True)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- access ----------------------------------------------------------------------------------------------
    def client_argv(self, program=CLIENT):
        """A client over TCP with the password in a 0600 --defaults-extra-file (as the module does)."""
        return [program, '--defaults-extra-file=%s' % self.option_file, '--host=127.0.0.1', '--port=%d' % self.port,
                '--user=%s' % SUPERUSER]

    def sql(self, sql, db=None):
        argv = self.client_argv() + ['--batch', '--skip-column-names', '-e', sql] + ([db] if db else [])
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode:
            raise RuntimeError('mariadb failed: %s' % proc.stderr)
        return proc.stdout.strip()

    def pid(self):
        """The server's pid (from its pid file), if it runs."""
        try:
            pid = int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if os.path.exists('/proc/%d' % pid) else None

    def version(self):
        return self.sql('SELECT VERSION()')

    def database_size(self, db=DB_NAME):
        """Bytes of the database's InnoDB files (file per table), what the disk holds."""
        folder = self.data / db
        return sum(entry.stat().st_size for entry in folder.iterdir() if entry.suffix == '.ibd') if folder.exists() else 0

    def data_length(self, db=DB_NAME):
        return int(self.sql("SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES "
                            "WHERE TABLE_SCHEMA = '%s'" % db))

    # -- generation --------------------------------------------------------------------------------------------
    def generate(self):
        started = time.monotonic()
        self.sql('CREATE DATABASE %s CHARACTER SET utf8mb4' % DB_NAME)
        for table, ddl in DDL.items():
            self.sql('CREATE TABLE %s (%s) ENGINE=InnoDB ROW_FORMAT=DYNAMIC %s' % (table, ddl, TABLE_OPTIONS.get(table, '')), DB_NAME)
        counts = row_counts(self.size_gb)
        self.log('generating %.2f GiB (seed %s): %s' % (self.size_gb, self.seed, counts))
        scratch = self.root / 'load'
        scratch.mkdir(exist_ok=True)
        order = ['attachments', 'documents', 'events', 'customers']  # longest first: two loaders stay busy
        with ProcessPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(_load_table, self.client_argv(), str(scratch), t, self.seed, counts) for t in order]
            for future in futures:
                table, count, seconds = future.result()
                self.log('  %-12s %9d rows  %6.1f s' % (table, count, seconds))
        target = int(self.size_gb * GIB)
        next_id, batch = counts['attachments'] + 1, 0
        while self.database_size() < target:  # the estimates fell short: top up with more attachments, deterministically
            batch += 1
            extra = max(100, int((target - self.database_size()) * 1.05 / TABLES['attachments'][1]))
            self.log('  top-up %d: %d more attachments' % (batch, extra))
            _load_table(self.client_argv(), str(scratch), 'attachments', self.seed, counts, batch=batch, start=next_id, count=extra)
            next_id += extra
        shutil.rmtree(scratch, ignore_errors=True)
        for sql in POST_DDL:
            self.sql(sql, DB_NAME)
        size = self.database_size()
        rows = {t: int(self.sql('SELECT COUNT(*) FROM %s' % t, DB_NAME)) for t in TABLES}
        self.meta = dict(self._want(), complete=True, database=DB_NAME, database_size=size, data_length=self.data_length(),
                         rows=rows, generation_seconds=round(time.monotonic() - started, 1))
        self.meta_path.write_text(json.dumps(self.meta, indent=2) + '\n')
        self.generated = True
        self.log('generated %s bytes (%.2f GiB) in %.0f s' % (size, size / GIB, self.meta['generation_seconds']))
        return self.meta
