"""The progress line job_wait prints while a dump or archive runs."""

from __future__ import annotations

import shlex
import subprocess

from ansible_collections.appvault.backup.plugins.action.job_wait import exception_text, progress_line, wait_command


def test_progress_with_estimate_shows_share_rate_and_time_left():
    line = progress_line('dump main', 1024 ** 3, 4 * 1024 ** 3, 12.4, 100 * 1024 ** 2)
    assert line == 'dump main: 1.0 GiB of ~4.0 GiB (25%), 100.0 MiB/s, ~30 s left after 12 s'


def test_progress_without_estimate_or_rate():
    assert progress_line('archive', 512, 0, 3, 0) == 'archive: 512 B after 3 s'


def test_progress_never_claims_done_while_running():
    assert '(99%)' in progress_line('dump x', 5000, 4000, 9, 10)


def test_the_message_of_an_unhandled_exception():
    """ansible-core 2.19's summary (with a cause chained) and an older release's traceback."""
    summary = {'event': {'msg': "'jobs'", 'chain': {'event': {'msg': 'disk on fire'}}}, '__ansible_type': 'ErrorSummary'}
    assert exception_text(summary) == "'jobs': disk on fire"
    assert exception_text('Traceback (most recent call last):\n  File "x.py", line 1\nKeyError: \'jobs\'\n') == "KeyError: 'jobs'"
    assert exception_text(None) == '' and exception_text({}) == ''


def test_the_host_side_wait_is_a_bounded_loop_on_the_status_file(tmp_path):
    """The words run by /bin/sh: with the job still started it waits its steps out; once the file holds the result
    (or cannot be read) it ends at once. Run for real with a step small enough to count, not to time."""
    status = tmp_path / "it's a job"
    assert wait_command(str(status), 0) == ''
    words = wait_command(str(status), 0.3, step=0.1)
    assert '-lt 3 ]' in words and shlex.quote(str(status)) in words
    marks = tmp_path / 'marks'
    counting = words.replace('sleep 0.1;', 'sleep 0.01; echo >> %s;' % shlex.quote(str(marks)))

    def steps_taken(content):
        marks.write_text('')
        if content is None:
            status.unlink(missing_ok=True)
        else:
            status.write_text(content)
        subprocess.run(['/bin/sh', '-c', counting + 'true'], check=True, timeout=30)
        return len(marks.read_text().splitlines())

    assert steps_taken('{"started": true, "finished": false, "ansible_job_id": "1"}') == 3
    assert steps_taken('{"changed": true, "rc": 0, "ansible_job_id": "1"}') == 0
    assert steps_taken(None) == 0
