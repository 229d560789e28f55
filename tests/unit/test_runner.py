"""The runner: list argv, pipelines without a shell, the exit status of every stage."""

from __future__ import annotations

import os
import threading
import time

import pytest

from ansible_collections.appvault.backup.plugins.module_utils import _runner


def test_pipeline_passes_bytes_and_reports_every_stage(tmp_path):
    out = tmp_path / 'out'
    results = _runner.pipeline([['printf', 'a\\nb\\nc\\n'], ['sort', '-r']], stdout_path=str(out))
    assert out.read_text() == 'c\nb\na\n'
    assert [r['rc'] for r in results] == [0, 0]


def test_failing_producer_is_not_hidden_by_succeeding_consumer(tmp_path):
    with pytest.raises(_runner.CommandError) as err:
        _runner.pipeline([['sh', '-c', 'echo partial; echo boom >&2; exit 3'], ['cat']], stdout_path=str(tmp_path / 'o'))
    assert err.value.msg == 'sh failed with exit status 3: boom'
    assert [s['rc'] for s in err.value.stages] == [3, 0]


def test_consumer_failure_reported_not_the_sigpipe_of_its_producer():
    with pytest.raises(_runner.CommandError) as err:
        _runner.pipeline([['yes'], ['sh', '-c', 'head -c 10 >/dev/null; echo consumer broke >&2; exit 2']])
    assert err.value.msg == 'sh failed with exit status 2: consumer broke'


def test_producer_cut_off_by_a_successful_consumer_is_fine():
    results = _runner.pipeline([['yes'], ['head', '-c', '4']])
    assert results[-1]['stdout'] == 'y\ny\n'
    assert results[0]['cut_off'] is True


def test_two_producers_cut_off_in_a_row_are_fine():
    # A middle range of a parallel MariaDB restore: zstd -dc | tail -c +N | head -c M; head stops, tail and the
    # decompressor before it both die of SIGPIPE.
    results = _runner.pipeline([['yes'], ['tail', '-c', '+3'], ['head', '-c', '4']])
    assert results[-1]['stdout'] == 'y\ny\n'
    assert [r.get('cut_off') for r in results[:2]] == [True, True]


def test_missing_program_is_a_command_error():
    with pytest.raises(_runner.CommandError) as err:
        _runner.run(['/nonexistent/tool', '--version'])
    assert 'cannot start /nonexistent/tool' in err.value.msg


def test_no_shell_interpretation():
    out = _runner.run(['echo', '$HOME; rm -rf /'])['stdout']
    assert out == '$HOME; rm -rf /\n'


def test_mask_argv_hides_secrets():
    assert _runner.mask_argv(['tool', '--token=s3cr3t', 'x'], ['s3cr3t']) == 'tool --token=******** x'


def test_as_user_names_an_unknown_user():
    with pytest.raises(_runner.CommandError) as err:
        _runner.as_user('no-such-user-appvault')
    assert err.value.msg == 'user no-such-user-appvault does not exist'


def test_as_user_of_the_current_user_switches_nothing():
    import pwd
    import os
    me = pwd.getpwuid(os.geteuid()).pw_name
    identity, env = _runner.as_user(me)
    assert identity == {} and env['USER'] == me


def test_feed_writes_through_the_command_into_the_file(tmp_path):
    out = tmp_path / 'out'
    with open(out, 'wb') as fileobj:
        feed = _runner.Feed(['tr', 'a-z', 'A-Z'], stdout_fd=fileobj.fileno())
        assert feed.write(b'hello ') and feed.write(b'feed\n' * 3)
        feed.finish()
    assert out.read_bytes() == b'HELLO ' + b'FEED\n' * 3


def test_feed_that_stops_reading_says_so_and_finish_names_the_failure(tmp_path):
    with open(tmp_path / 'out', 'wb') as fileobj:
        feed = _runner.Feed(['zstd', '-dc', '-q'], stdout_fd=fileobj.fileno())
        written = [feed.write(b'not zstd data at all ' * 4096) for _round in range(64)]
        assert written[-1] is False  # the decompressor gave up and closed its end
        with pytest.raises(_runner.CommandError) as err:
            feed.finish()
    assert err.value.msg.startswith('zstd failed with exit status 1'), err.value.msg


def test_feed_of_a_missing_program_is_a_command_error(tmp_path):
    with open(tmp_path / 'out', 'wb') as fileobj, pytest.raises(_runner.CommandError) as err:
        _runner.Feed(['appvault-no-such-program'], stdout_fd=fileobj.fileno())
    assert 'cannot start appvault-no-such-program' in err.value.msg


def test_session_kill_ends_a_reader_waiting_in_another_thread():
    session = _runner.Session(['sleep', '30'])
    errors = []

    def wait_for_answer():
        try:
            session.readline()
        except _runner.CommandError as exc:
            errors.append(exc.msg)
    reader = threading.Thread(target=wait_for_answer)
    reader.start()
    session.kill()
    reader.join(10)
    assert not reader.is_alive() and errors and 'sleep ended with exit status -9' in errors[0]
    assert session.close() == -9


def _ranged(src, argv, ranges):
    with _runner.Stream([argv], stdin_path=str(src), stdin_ranges=ranges) as stream:
        out = stream.stdout.read()
        stream.finish()
    return out


def test_stream_reads_byte_ranges_of_its_file_in_order(tmp_path):
    src = tmp_path / 'src'
    src.write_bytes(bytes(range(256)) * 8192)  # 2 MiB
    data = src.read_bytes()
    ranges = [(10, 5), (0, 3), (len(data) - 1000, None), (1000, 1048576)]
    assert _ranged(src, ['cat'], ranges) == data[10:15] + data[0:3] + data[-1000:] + data[1000:1000 + 1048576]
    assert _ranged(src, ['cat'], []) == b''


def test_stream_ranges_beyond_the_end_of_the_file_fail(tmp_path):
    """A range the file does not hold is an error even when the reader succeeds: it got less than it should."""
    src = tmp_path / 'src'
    src.write_bytes(b'x' * 5000)
    with pytest.raises(_runner.CommandError, match='ends at byte 5000, before the end of the range it should send'):
        _ranged(src, ['cat'], [(0, 4000), (3000, 4000)])


def test_stream_ranges_to_a_reader_that_stops_early(tmp_path):
    """A reader that ends before its input does is judged by its own exit status, not the broken pipe."""
    src = tmp_path / 'src'
    src.write_bytes(b'y' * (4 << 20))
    assert _ranged(src, ['head', '-c', '10'], [(0, None)]) == b'y' * 10
    with pytest.raises(_runner.CommandError, match='sh failed with exit status 3'):
        _ranged(src, ['sh', '-c', 'head -c 1 >/dev/null; exit 3'], [(0, None)])


def test_stream_ranges_without_sendfile(tmp_path, monkeypatch):
    """Where sendfile cannot write to a pipe, the thread reads and writes the ranges itself."""
    def refuse(*args):
        raise OSError(22, 'Invalid argument')
    monkeypatch.setattr(_runner.os, 'sendfile', refuse)
    src = tmp_path / 'src'
    src.write_bytes(bytes(range(256)) * 8192)
    data = src.read_bytes()
    assert _ranged(src, ['cat'], [(7, len(data) - 7), (0, 7)]) == data[7:] + data[:7]


def test_feed_write_gives_up_on_a_reader_that_takes_nothing(tmp_path):
    """A command that never reads its stdin: once the pipe is full, write with a timeout returns False instead of
    blocking for ever."""
    out = (tmp_path / 'out').open('wb')
    feed = _runner.Feed(['sleep', '30'], stdout_fd=out.fileno())
    try:
        started = time.monotonic()
        assert feed.write(b'x' * (4 << 20), timeout=0.5) is False
        assert time.monotonic() - started < 5
    finally:
        feed.kill()
        out.close()


def test_feed_write_with_a_timeout_delivers_every_byte(tmp_path):
    target = tmp_path / 'copy'
    data = os.urandom(3 << 20)
    with target.open('wb') as out:
        feed = _runner.Feed(['cat'], stdout_fd=out.fileno())
        assert feed.write(data[:1 << 20], timeout=5) and feed.write(data[1 << 20:], timeout=5)
        feed.finish()
    assert target.read_bytes() == data
