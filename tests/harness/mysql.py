"""Throwaway MariaDB servers for the tests: mariadb-install-db into a temp dir, a free port, an own socket."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from harness.common import free_port, run_as

SUPERUSER = 'root'
MARIADBD = '/usr/sbin/mariadbd'
INSTALL_DB = shutil.which('mariadb-install-db') or '/usr/bin/mariadb-install-db'
CLIENT = shutil.which('mariadb') or shutil.which('mysql') or '/usr/bin/mariadb'
DUMP = shutil.which('mariadb-dump') or shutil.which('mysqldump') or '/usr/bin/mariadb-dump'


class MariaDBServer:
    """One server; root has ``password`` (mysql_native_password, grants enforced), TCP on 127.0.0.1 and a socket."""

    def __init__(self, base, name):
        if not os.path.exists(MARIADBD):
            raise RuntimeError('%s is not installed (run make deps: mariadb-server)' % MARIADBD)
        self.root = Path(tempfile.mkdtemp(prefix='my-%s-' % name, dir=base))
        self.data = self.root / 'data'
        self.socket = self.root / 'mysqld.sock'
        self.pidfile = self.root / 'mysqld.pid'
        self.log = self.root / 'error.log'
        self.port = free_port()
        self.password = 'pw#%s "q\' %d' % (name, os.getpid())  # a '#', quotes and a space: option-file quoting must hold
        self.name = name
        self.os_user = 'mysql' if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.proc = None

    def start(self):
        os.chmod(self.root, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.root, self.os_user)
        run_as(self.os_user, [INSTALL_DB, '--no-defaults', '--auth-root-authentication-method=normal', '--datadir=%s' % self.data,
                              '--user=%s' % self.os_user, '--skip-test-db', '--skip-name-resolve'])
        self._spawn()
        self.sql("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; ALTER USER 'root'@'localhost' IDENTIFIED BY %s; "
                 "ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY %s; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; "
                 "FLUSH PRIVILEGES" % (quote(self.password), quote(self.password)), password=None)
        return self

    def _spawn(self):
        argv = [MARIADBD, '--no-defaults', '--datadir=%s' % self.data, '--port=%d' % self.port, '--bind-address=127.0.0.1',
                '--socket=%s' % self.socket, '--pid-file=%s' % self.pidfile, '--log-error=%s' % self.log,
                '--skip-name-resolve', '--innodb-buffer-pool-size=128M', '--innodb-flush-log-at-trx-commit=0',
                '--innodb-doublewrite=0', '--sync-binlog=0', '--log-bin=%s' % (self.root / 'binlog'), '--server-id=1',
                '--character-set-server=utf8mb4', '--collation-server=utf8mb4_unicode_ci', '--max-connections=60']
        if os.geteuid() == 0:
            argv.append('--user=%s' % self.os_user)
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('mariadbd exited: %s' % self.log.read_text()[-3000:])
            if self.socket.exists() and self.ping():
                return
            time.sleep(0.2)
        raise RuntimeError('mariadbd did not start: %s' % self.log.read_text()[-3000:])

    def ping(self):
        proc = subprocess.run([CLIENT, '--no-defaults', '--socket=%s' % self.socket, '-uroot', '-e', 'SELECT 1'],
                              capture_output=True, text=True, check=False, env=self._env(self.password))
        if proc.returncode == 0:
            return True
        # before the root password is set
        proc = subprocess.run([CLIENT, '--no-defaults', '--socket=%s' % self.socket, '-uroot', '-e', 'SELECT 1'],
                              capture_output=True, text=True, check=False)
        return proc.returncode == 0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def kill(self):
        """Stop the server without removing its files (the 'server down' tests)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def restart(self):
        self.kill()
        self._spawn()

    def halt(self):
        """The same words as PgServer: stop, keeping the files; resume() starts it again if it is down."""
        self.kill()

    def resume(self):
        if self.proc is None or self.proc.poll() is not None:
            self._spawn()

    # -- helpers for tests -------------------------------------------------
    @staticmethod
    def _env(password):
        env = dict(os.environ)
        env.pop('MYSQL_PWD', None)
        if password is not None:
            env['MYSQL_PWD'] = password  # tests only; the modules never use it
        return env

    def conn_args(self, name, **extra):
        """Module options for a TCP connection as root (password through the module's option file)."""
        args = dict(name=name, login_host='127.0.0.1', login_port=self.port, login_user=SUPERUSER, login_password=self.password)
        args.update(extra)
        return args

    def sql(self, sql=None, db=None, file=None, check=True, password='default', user=SUPERUSER):
        argv = [CLIENT, '--no-defaults', '--socket=%s' % self.socket, '-u', user, '--batch', '--skip-column-names',
                '--default-character-set=utf8mb4']
        if sql is not None:
            argv += ['-e', sql]
        if db:
            argv.append(db)
        stdin = open(file, 'rb') if file else subprocess.DEVNULL
        try:
            proc = subprocess.run(argv, stdin=stdin, capture_output=True, text=True, check=False,
                                  env=self._env(self.password if password == 'default' else password))
        finally:
            if file:
                stdin.close()
        if check and proc.returncode:
            raise RuntimeError('mariadb failed: %s' % proc.stderr)
        return proc.stdout.strip() if check else proc

    def create_db(self, name):
        self.sql('DROP DATABASE IF EXISTS `%s`; CREATE DATABASE `%s`' % (name, name))

    def drop_db(self, name):
        self.sql('DROP DATABASE IF EXISTS `%s`' % name)

    def has_db(self, name):
        return self.sql("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '%s'" % name) == '1'

    def databases(self):
        return sorted(self.sql('SHOW DATABASES').split())

    def load_fixture(self, name):
        self.create_db(name)
        self.sql(db=name, file=Path(__file__).resolve().parent.parent / 'fixtures' / 'mysql_rich.sql')

    def schema_dump(self, name):
        """Independent check of the DDL: mariadb-dump --no-data, AUTO_INCREMENT and comment lines dropped."""
        proc = subprocess.run([DUMP, '--no-defaults', '--socket=%s' % self.socket, '-uroot', '--no-data', '--skip-comments',
                               '--routines', '--events', '--triggers', '--skip-dump-date', name],
                              capture_output=True, text=True, check=True, env=self._env(self.password))
        return proc.stdout


def quote(value):
    return "'" + str(value).replace('\\', '\\\\').replace("'", "\\'") + "'"
