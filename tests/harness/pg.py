"""Throwaway PostgreSQL servers for the tests: initdb into a temp dir, a free port, an own socket dir."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from harness.common import free_port, run_as

SUPERUSER = 'postgres'


def pg_bin_dirs():
    """Installed PostgreSQL server versions, newest first: {major: bin_dir}."""
    found = {}
    for path in Path('/usr/lib/postgresql').glob('*/bin'):
        if (path / 'initdb').exists():
            found[int(path.parent.name)] = str(path)
    return dict(sorted(found.items(), reverse=True))


class PgServer:
    """One server; ``password`` is the superuser's; TCP on 127.0.0.1 needs it (scram), the socket trusts."""

    def __init__(self, base, name, major=None):
        dirs = pg_bin_dirs()
        if not dirs:
            raise RuntimeError('no PostgreSQL server installed under /usr/lib/postgresql (run make deps)')
        self.major = major or next(iter(dirs))
        self.bin_dir = dirs[self.major]
        self.root = Path(tempfile.mkdtemp(prefix='pg-%s-' % name, dir=base))
        self.data = self.root / 'data'
        self.socket_dir = self.root / 'sock'
        self.port = free_port()
        self.password = 'pw-%s-%d' % (name, os.getpid())
        self.name = name
        self.os_user = 'postgres' if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

    def start(self):
        os.chmod(self.root, 0o755)
        self.socket_dir.mkdir()
        pwfile = self.root / 'pwfile'
        pwfile.write_text(self.password + '\n')
        if os.geteuid() == 0:
            shutil.chown(self.root, self.os_user)
            shutil.chown(self.socket_dir, self.os_user)
            shutil.chown(pwfile, self.os_user)
        run_as(self.os_user, [self.bin_dir + '/initdb', '-D', str(self.data), '-U', SUPERUSER, '--pwfile', str(pwfile),
                              '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync'])
        pwfile.unlink()
        self.resume()
        return self

    def resume(self):
        """Start the (initialised) server unless it runs."""
        if (self.data / 'postmaster.pid').exists():
            return
        opts = ('-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off '
                '-c max_connections=40 -c shared_buffers=128MB -c max_wal_size=2GB' % (self.port, self.socket_dir))
        run_as(self.os_user, [self.bin_dir + '/pg_ctl', '-D', str(self.data), '-o', opts, '-l', str(self.root / 'log'), '-w', 'start'])

    def halt(self):
        """Stop the server, keeping its files (the 'server down' tests); resume() starts it again.

        Fast, not immediate: clients are cut off all the same, and with the harness's asynchronous commits a crash
        would lose the last transactions of the test's own fixture.
        """
        run_as(self.os_user, [self.bin_dir + '/pg_ctl', '-D', str(self.data), '-m', 'fast', '-w', 'stop'], check=False)

    def stop(self):
        if self.data.exists():
            run_as(self.os_user, [self.bin_dir + '/pg_ctl', '-D', str(self.data), '-m', 'immediate', '-w', 'stop'], check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- helpers for tests -------------------------------------------------
    def conn_args(self, name, **extra):
        """Module options for a TCP connection as the superuser (password through the module's passfile)."""
        args = dict(name=name, login_host='127.0.0.1', login_port=self.port, login_user=SUPERUSER, login_password=self.password)
        args.update(extra)
        return args

    def psql(self, sql=None, db='postgres', file=None, variables=None, check=True):
        argv = [self.bin_dir + '/psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', str(self.socket_dir),
                '-p', str(self.port), '-U', SUPERUSER, '-d', db]
        for key, value in (variables or {}).items():
            argv += ['-v', '%s=%s' % (key, value)]
        argv += ['-f', str(file)] if file else ['-c', sql]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if check and proc.returncode:
            raise RuntimeError('psql failed: %s' % proc.stderr)
        return proc.stdout.strip() if check else proc

    def create_db(self, name):
        self.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
        self.psql('CREATE DATABASE "%s"' % name)

    def drop_db(self, name):
        self.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)

    def has_db(self, name):
        return self.psql("SELECT count(*) FROM pg_database WHERE datname = '%s'" % name) == '1'

    def load_fixture(self, name, rows=20000):
        self.create_db(name)
        self.psql(db=name, file=Path(__file__).resolve().parent.parent / 'fixtures' / 'pg_rich.sql', variables={'rows': rows})

    def schema_dump(self, name):
        """Independent check of the DDL: pg_dump --schema-only of the database, comments and SET lines dropped."""
        proc = subprocess.run([self.bin_dir + '/pg_dump', '--schema-only', '--no-owner', '-h', str(self.socket_dir), '-p', str(self.port),
                               '-U', SUPERUSER, name], capture_output=True, text=True, check=True)
        return '\n'.join(line for line in proc.stdout.splitlines() if line and not line.startswith('--')
                         and not line.startswith('\\restrict') and not line.startswith('\\unrestrict'))

    def wait_stopped(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline and (self.data / 'postmaster.pid').exists():
            time.sleep(0.1)
