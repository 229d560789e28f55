"""Host-to-host transfer: destination parsing, argv, and the receiving side's scripts run by a real shell."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from ansible_collections.appvault.backup.plugins.module_utils import _transfer
from ansible_collections.appvault.backup.plugins.module_utils._common import AppvaultError


@pytest.mark.parametrize('dest, expected', [
    ('root@10.0.0.2:/var/backups/appvault', ('root', '10.0.0.2', '/var/backups/appvault')),
    ('standby.example:/srv/b/', (None, 'standby.example', '/srv/b')),
    ('backup@[fd00::2]:/b', ('backup', 'fd00::2', '/b')),
])
def test_dest_is_parsed(dest, expected):
    assert _transfer.parse_dest(dest) == expected


@pytest.mark.parametrize('dest', ['host', 'host:relative/dir', 'user@:/dir', '', 'a b@host:/d'])
def test_bad_dest_is_refused_naming_the_form(dest):
    with pytest.raises(AppvaultError, match='user@host:/absolute/dir'):
        _transfer.parse_dest(dest)


def test_known_hosts_lines_name_the_port_only_when_not_22():
    key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2x root@target'
    assert _transfer.known_hosts_lines('10.0.0.2', 22, [key]) == '10.0.0.2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2x\n'
    assert _transfer.known_hosts_lines('10.0.0.2', 2222, [key]).startswith('[10.0.0.2]:2222 ssh-ed25519 ')
    with pytest.raises(AppvaultError, match='not an SSH public key'):
        _transfer.known_hosts_lines('h', 22, ['not a key'])


def test_ssh_is_strict_and_batch_and_rsync_does_not_compress():
    ssh = _transfer.ssh_argv(2222, identity='/tmp/k/id', known_hosts='/tmp/k/known_hosts')
    text = ' '.join(ssh)
    for option in ('BatchMode=yes', 'StrictHostKeyChecking=yes', 'IdentitiesOnly=yes', 'UserKnownHostsFile=/tmp/k/known_hosts'):
        assert option in text
    assert ssh[ssh.index('-p') + 1] == '2222' and ssh[ssh.index('-F') + 1] == '/dev/null'
    rsync = _transfer.rsync_argv(ssh, '/b/a.tar.zst', 'root@h', '/b/.a.tar.zst.partial', 60)
    assert '--append-verify' in rsync and '-z' not in rsync and '--compress' not in rsync
    assert rsync[-2:] == ['/b/a.tar.zst', 'root@h:/b/.a.tar.zst.partial']


def _sh(script):
    return subprocess.run(['sh', '-c', script], check=False, capture_output=True, text=True)


def _receive(tmp_path, content, digest):
    """Run the receiving side's scripts in a real shell, as sshd would, with a partial holding ``content``."""
    paths = _transfer.names(str(tmp_path / 'in'), 'app-20250101T000000Z.tar.zst')
    state = _sh(_transfer.state_script(str(tmp_path / 'in'), paths, create=True))
    assert state.returncode == 0, state.stderr
    assert state.stdout.strip() == 'final= partial=0'
    with open(paths['partial'], 'wb') as fileobj:
        fileobj.write(content)
    done = _sh(_transfer.finish_script(paths, digest, 'app-20250101T000000Z.tar.zst'))
    return paths, done


def test_a_verified_arrival_is_renamed_checksum_file_last(tmp_path):
    content = b'archive bytes\n' * 1000
    digest = hashlib.sha256(content).hexdigest()
    paths, done = _receive(tmp_path, content, digest)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(tmp_path / 'in')) == ['app-20250101T000000Z.tar.zst', 'app-20250101T000000Z.tar.zst.sha256']
    with open(paths['sidecar']) as fileobj:
        assert fileobj.read() == '%s  app-20250101T000000Z.tar.zst\n' % digest
    assert os.stat(paths['final']).st_mode & 0o777 == 0o600
    assert os.stat(str(tmp_path / 'in')).st_mode & 0o777 == 0o700
    state = _sh(_transfer.state_script(str(tmp_path / 'in'), paths, create=False))
    assert state.stdout.strip() == 'final=%s partial=0' % digest


def test_a_corrupt_arrival_is_removed_and_nothing_looks_valid(tmp_path):
    paths, done = _receive(tmp_path, b'truncated', hashlib.sha256(b'the real archive').hexdigest())
    assert done.returncode == _transfer.MISMATCH_RC
    assert 'sha256 on arrival is' in done.stderr
    assert os.listdir(tmp_path / 'in') == []
