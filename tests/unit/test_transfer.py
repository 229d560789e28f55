"""Host-to-host transfer: destination parsing, argv, and the receiving side's scripts run by a real shell."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time

import pytest

from ansible_collections.appvault.backup.plugins.module_utils import _common, _transfer
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


def _effective_ciphers(argv):
    """The ciphers the real ssh client would offer with ``argv``'s options (``ssh -G`` prints them; no connection)."""
    out = subprocess.run(argv[:1] + ['-G'] + argv[1:] + ['target.invalid'], check=True, capture_output=True, text=True).stdout
    return next(line.split(None, 1)[1] for line in out.splitlines() if line.startswith('ciphers ')).split(',')


def test_aes_gcm_first_offers_the_default_ciphers_only_reordered():
    default = _effective_ciphers(_transfer.ssh_argv(22, aes=False))
    preferred = _effective_ciphers(_transfer.ssh_argv(22, aes=True))
    assert preferred[0] == 'aes128-gcm@openssh.com' and default[0] != preferred[0]
    assert sorted(preferred) == sorted(default)  # nothing a server accepted is lost


@pytest.mark.parametrize('text, expected', [
    ('processor\t: 0\nflags\t\t: fpu sse2 aes avx pclmulqdq\n', True),   # x86 with AES-NI
    ('processor\t: 0\nflags\t\t: fpu sse2 avx aesx\n', False),           # a flag that only starts with aes
    ('processor\t: 0\nFeatures\t: fp asimd aes pmull sha1 sha2\n', True),  # ARMv8 crypto extension
    ('processor\t: 0\nFeatures\t: fp asimd\n', False),
])
def test_cpu_aes_flag_is_read_from_cpuinfo(tmp_path, text, expected):
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text(text)
    assert _common.cpu_has_aes(str(cpuinfo)) is expected
    assert _common.cpu_has_aes(str(tmp_path / 'missing')) is False


def _sh(script, env=None):
    return subprocess.run(['sh', '-c', script], check=False, capture_output=True, text=True, env=env)


def _receive(tmp_path, content, digest, env=None):
    """Run the receiving side's scripts in a real shell, as sshd would, with a partial holding ``content``."""
    paths = _transfer.names(str(tmp_path / 'in'), 'app-20250101T000000Z.tar.zst')
    state = _sh(_transfer.state_script(str(tmp_path / 'in'), paths, create=True), env)
    assert state.returncode == 0, state.stderr
    assert state.stdout.strip() == 'final= partial=0'
    with open(paths['partial'], 'wb') as fileobj:
        fileobj.write(content)
    done = _sh(_transfer.finish_script(paths, digest, 'app-20250101T000000Z.tar.zst'), env)
    return paths, done


def _without_python(tmp_path):
    """A PATH with the receiving side's tools but no python3 (links to them in a directory of their own)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for tool in ('sh', 'sha256sum', 'head', 'wc', 'mkdir', 'chmod', 'sync', 'mv', 'rm', 'dirname', 'printf', 'cat'):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return dict(os.environ, PATH=str(bin_dir))


@pytest.mark.parametrize('hasher', ['python3', 'sha256sum'])
def test_a_verified_arrival_is_renamed_checksum_file_last(tmp_path, hasher):
    content = b'archive bytes\n' * 1000
    digest = hashlib.sha256(content).hexdigest()
    paths, done = _receive(tmp_path, content, digest, None if hasher == 'python3' else _without_python(tmp_path))
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(tmp_path / 'in')) == ['app-20250101T000000Z.tar.zst', 'app-20250101T000000Z.tar.zst.sha256']
    with open(paths['sidecar']) as fileobj:
        assert fileobj.read() == '%s  app-20250101T000000Z.tar.zst\n' % digest
    assert os.stat(paths['final']).st_mode & 0o777 == 0o600
    assert os.stat(str(tmp_path / 'in')).st_mode & 0o777 == 0o700
    state = _sh(_transfer.state_script(str(tmp_path / 'in'), paths, create=False))
    assert state.stdout.strip() == 'final=%s partial=0' % digest
    # the identity a restore there trusts the check by is the one _archive.verify compares (none without python3)
    identity = _transfer.arrived_identity(done.stdout)
    if hasher == 'python3':
        assert identity == _common.file_identity(os.stat(paths['final'])), done.stdout
    else:
        assert identity is None and done.stdout.strip() == 'verified', done.stdout


@pytest.mark.parametrize('hasher', ['python3', 'sha256sum'])
def test_a_corrupt_arrival_is_removed_and_nothing_looks_valid(tmp_path, hasher):
    paths, done = _receive(tmp_path, b'truncated', hashlib.sha256(b'the real archive').hexdigest(),
                           None if hasher == 'python3' else _without_python(tmp_path))
    assert done.returncode == _transfer.MISMATCH_RC
    assert 'sha256 on arrival is' in done.stderr
    assert os.listdir(tmp_path / 'in') == []


@pytest.mark.parametrize('hasher', ['python3', 'sha256sum'])
def test_a_stream_is_written_hashed_and_then_renamed_with_the_digest_it_printed(tmp_path, hasher):
    """The receiving side of a Mirror in a real shell: stdin to the partial (0600), its sha256 printed; finish_script
    with that digest renames it into place without reading it again; a second stream of the same name is refused."""
    env = None if hasher == 'python3' else _without_python(tmp_path)
    content = os.urandom(3 << 20)
    digest = hashlib.sha256(content).hexdigest()
    name = 'app-20250101T000000Z.tar.zst'
    paths = _transfer.names(str(tmp_path / 'in'), name)
    script = _transfer.stream_script(str(tmp_path / 'in'), paths)
    got = subprocess.run(['sh', '-c', script], input=content, capture_output=True, check=False, env=env)
    assert got.returncode == 0, got.stderr
    assert got.stdout.decode().strip() == digest
    assert os.stat(paths['partial']).st_mode & 0o777 == 0o600 and os.stat(str(tmp_path / 'in')).st_mode & 0o777 == 0o700
    done = _sh(_transfer.finish_script(paths, digest, name, received=digest), env)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(tmp_path / 'in')) == [name, name + '.sha256']
    assert _transfer.arrived_identity(done.stdout) == (_common.file_identity(os.stat(paths['final'])) if hasher == 'python3' else None)
    with open(paths['final'], 'rb') as fileobj:
        assert fileobj.read() == content
    again = subprocess.run(['sh', '-c', script], input=b'other bytes', capture_output=True, check=False, env=env)
    assert again.returncode == _transfer.EXISTS_RC and b'is there already' in again.stderr
    assert sorted(os.listdir(tmp_path / 'in')) == [name, name + '.sha256']


def test_finish_with_a_received_digest_that_differs_removes_the_partial(tmp_path):
    paths = _transfer.names(str(tmp_path), 'app-20250101T000000Z.tar.zst')
    with open(paths['partial'], 'wb') as fileobj:
        fileobj.write(b'what arrived')
    done = _sh(_transfer.finish_script(paths, hashlib.sha256(b'the archive').hexdigest(), 'app-20250101T000000Z.tar.zst',
                                       received=hashlib.sha256(b'what arrived').hexdigest()))
    assert done.returncode == _transfer.MISMATCH_RC and 'sha256 on arrival is' in done.stderr
    assert os.listdir(tmp_path) == []


# -- the ephemeral key of a direct transfer ---------------------------------------------------------------------------
def test_keypair_is_a_matching_ed25519_pair(tmp_path):
    private, public = _transfer.keypair('appvault-transfer-t1')
    assert public.startswith('ssh-ed25519 ') and public.endswith(' appvault-transfer-t1')
    key = tmp_path / 'k'
    key.write_text(private)
    key.chmod(0o600)
    derived = subprocess.run(['ssh-keygen', '-y', '-f', str(key)], capture_output=True, text=True, check=True).stdout.split()
    assert derived[:2] == public.split()[:2]
    assert _transfer.keypair('x')[1] != public  # a new pair each time


def test_access_line_is_restricted_and_expires():
    public = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2x appvault-transfer-t1'
    assert _transfer.access_line(public, '202601011200Z') == 'restrict,expiry-time="202601011200Z" ' + public
    with pytest.raises(AppvaultError, match='one SSH public key line'):
        _transfer.access_line('command="sh" ' + public, '202601011200Z')
    with pytest.raises(AppvaultError, match='YYYYMMDDHHMMZ'):
        _transfer.access_line(public, '2026-01-01')


@pytest.fixture
def account(tmp_path, monkeypatch):
    """_transfer.grant's view of a user whose home is tmp_path/home (this process's uid and gid)."""
    home = tmp_path / 'home'
    home.mkdir()
    entry = type('pw', (), dict(pw_dir=str(home), pw_uid=os.getuid(), pw_gid=os.getgid()))

    def getpwnam(name):
        if name != 'sender':
            raise KeyError(name)
        return entry

    monkeypatch.setattr(_transfer.pwd, 'getpwnam', getpwnam)
    return home


def test_grant_adds_once_keeps_other_lines_and_takes_back(account):
    ssh = account / '.ssh'
    line = _transfer.access_line('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG2x t1', '202601011200Z')
    assert _transfer.grant('sender', line) is True
    assert (ssh / 'authorized_keys').read_text() == line + '\n'
    assert oct(ssh.stat().st_mode & 0o777) == '0o700' and oct((ssh / 'authorized_keys').stat().st_mode & 0o777) == '0o600'
    (ssh / 'authorized_keys').write_text('ssh-ed25519 AAAAkeep other\n' + line + '\n')
    assert _transfer.grant('sender', line) is False  # already there: nothing rewritten
    assert _transfer.grant('sender', line, 'absent', check_mode=True) is True
    assert line in (ssh / 'authorized_keys').read_text()  # check mode changed nothing
    assert _transfer.grant('sender', line, 'absent') is True
    assert (ssh / 'authorized_keys').read_text() == 'ssh-ed25519 AAAAkeep other\n'
    assert _transfer.grant('sender', line, 'absent') is False
    with pytest.raises(AppvaultError, match='user nobody-here does not exist'):
        _transfer.grant('nobody-here', line)


def test_host_keys_and_default_address(tmp_path):
    (tmp_path / 'ssh_host_ed25519_key.pub').write_text('ssh-ed25519 AAAAhost root@h\n')
    (tmp_path / 'ssh_host_ed25519_key').write_text('private, never read\n')
    (tmp_path / 'sshd_config').write_text('Port 22\n')
    assert _transfer.host_keys(str(tmp_path)) == ['ssh-ed25519 AAAAhost root@h']
    address = _transfer.default_address()
    assert address is None or address.count('.') == 3


def _local_mirror(monkeypatch, script, timeout):
    """A Mirror whose 'ssh' is a local shell running ``script`` (the login and remote script become its ignored
    arguments): its failure handling, without a network."""
    monkeypatch.setattr(_transfer, 'ssh_argv', lambda *args, **kwargs: ['sh', '-c', script, 'sh'])
    mirror = _transfer.Mirror('root@host.example:/srv/in', timeout=timeout)
    mirror.start('app-20250101T000000Z.tar.zst')
    return mirror


def test_a_mirror_whose_receiver_takes_nothing_gives_up_and_reports_it(monkeypatch):
    mirror = _local_mirror(monkeypatch, 'sleep 60', timeout=1)
    started = time.monotonic()
    for _part in range(4):
        mirror.write(b'x' * (1 << 20))  # never raises, never blocks for longer than the timeout (and the 5 s grace)
    assert time.monotonic() - started < 15
    result = mirror.finish('0' * 64)
    assert result['sent'] is False and 'took no byte for 1 s' in result['reason'], result


def test_a_mirror_whose_receiver_fails_reports_its_error(monkeypatch):
    mirror = _local_mirror(monkeypatch, 'head -c 10 > /dev/null; echo "disk full there" >&2; exit 3', timeout=5)
    for _part in range(4):
        mirror.write(b'x' * (1 << 20))
    result = mirror.finish('0' * 64)
    assert result['sent'] is False and 'disk full there' in result['reason'], result
    assert result['size'] < 4 << 20


def test_a_mirror_refuses_a_bad_destination_or_host_key_before_anything_starts():
    with pytest.raises(AppvaultError, match='is not user@host:/absolute/dir'):
        _transfer.Mirror('host.example:relative/dir')
    with pytest.raises(AppvaultError, match='is not an SSH public key'):
        _transfer.Mirror('root@host.example:/srv/in', host_keys=['not a key'])
