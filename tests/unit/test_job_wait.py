"""The progress line job_wait prints while a dump or archive runs."""

from __future__ import annotations

from ansible_collections.appvault.backup.plugins.action.job_wait import exception_text, progress_line


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
