"""A throwaway SSH host: a podman container from the test image with sshd, for host destinations (transfer faults).

Root logs in with a key made for the test. sshd runs as a daemon under a PID 1 that only sleeps, so the fault
suite can stop it (every process but PID 1 killed: the listener and the open sessions, as when the host's network is
cut) and start it again in the same container, host keys unchanged.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
from pathlib import Path

from harness.common import REPO


def podman(*argv):
    proc = subprocess.run(['podman'] + list(argv), capture_output=True, text=True, check=False)
    if proc.returncode:
        raise AssertionError('podman %s failed (%d): %s' % (' '.join(argv[:3]), proc.returncode, proc.stderr[-2000:]))
    return proc.stdout


def ssh_answers(port, host='127.0.0.1'):
    """Whether an SSH server greets on ``port`` (a published port may accept and close when nothing listens)."""
    try:
        with socket.create_connection((host, port), timeout=3) as sock:
            sock.settimeout(3)
            return sock.recv(64).startswith(b'SSH-2.0-')
    except OSError:
        return False


class SshHost:
    """start() runs the container; stop_sshd()/start_sshd() cut and restore its SSH; remove() removes it."""

    def __init__(self, work):
        self.work = Path(work)
        self.name = 'appvault-faults-%s' % secrets.token_hex(5)
        self.key = self.work / 'id_ed25519'
        self.port = None

    def start(self):
        image = subprocess.run(['bash', str(REPO / 'tests' / 'setup' / 'images.sh'), 'bookworm'],
                               capture_output=True, text=True, check=True).stdout.split()[-1]
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'appvault-faults', '-f', str(self.key)], check=True)
        podman('network', 'create', '--disable-dns', self.name)
        podman('run', '--detach', '--name', self.name, '--network', self.name, '--publish', '127.0.0.1::22',
               '--env', 'AUTHORIZED_KEY=%s' % Path(str(self.key) + '.pub').read_text().strip(), image, '/bin/sh', '-c',
               'install -d -m 0700 /root/.ssh && printf "%s\\n" "$AUTHORIZED_KEY" > /root/.ssh/authorized_keys'
               ' && install -d -m 0755 /run/sshd && ssh-keygen -A && /usr/sbin/sshd && exec sleep infinity')
        self.port = int(podman('port', self.name, '22/tcp').rsplit(':', 1)[1])
        self._wait(True)
        return self

    def _wait(self, up, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ssh_answers(self.port) == up:
                return
            time.sleep(0.3)
        raise AssertionError('sshd of %s did not %s' % (self.name, 'answer' if up else 'stop'))

    def sh(self, script):
        return podman('exec', self.name, 'sh', '-c', script)

    def stop_sshd(self):
        """Every process of the host but PID 1 killed: sshd and its sessions; say what was done."""
        self.sh('kill -9 -1 || true')
        self._wait(False, 10)
        return 'sshd of the destination host killed (listener and sessions)'

    def start_sshd(self):
        if not ssh_answers(self.port):
            self.sh('/usr/sbin/sshd')
            self._wait(True)

    def inventory_host(self):
        return dict(ansible_host='127.0.0.1', ansible_port=self.port, ansible_user='root', ansible_ssh_private_key_file=str(self.key),
                    ansible_python_interpreter='/usr/bin/python3',
                    ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null')

    def remove(self):
        subprocess.run(['podman', 'rm', '--force', '--time', '0', self.name], capture_output=True, check=False)
        subprocess.run(['podman', 'network', 'rm', '--force', self.name], capture_output=True, check=False)
