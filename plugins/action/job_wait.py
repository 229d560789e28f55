# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wait for an async job and show its progress (bytes written, rate, time left) while it runs."""

from __future__ import annotations

import json
import shlex
import time

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()
MARK = '--appvault-job-wait--'
LEASE_NAME = '.appvault-maintenance.json'  # _maintenance.STATE_NAME
HOST_STEP = 0.1  # seconds between the host-side checks of a job's end


def human(size):
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(size) < 1024 or unit == 'TiB':
            return ('%d %s' if unit == 'B' else '%.1f %s') % (size, unit)
        size /= 1024.0
    return str(size)


def progress_line(label, done, total, elapsed, rate):
    """'dump main: 1.2 GiB of ~3.4 GiB (35%), 85.0 MiB/s, ~26 s left' - the estimate parts only when known."""
    text = '%s: %s' % (label, human(done))
    if total:
        text += ' of ~%s (%d%%)' % (human(total), min(99, int(100 * done / total)))
    if rate > 0:
        text += ', %s/s' % human(rate)
        if total and total > done:
            text += ', ~%d s left' % int((total - done) / rate)
    return text + ' after %d s' % int(elapsed)


def exception_text(exception):
    """The message of a module's unhandled exception as its result carries it: ansible-core 2.19 writes a summary
    ({'event': {'msg': ..., 'chain': {'event': ...}}}), older releases a traceback (its last line is the error)."""
    if isinstance(exception, dict):
        messages = []
        event = exception.get('event', exception)
        while isinstance(event, dict):
            if event.get('msg'):
                messages.append(str(event['msg']))
            event = (event.get('chain') or {}).get('event')
        return ': '.join(messages)
    lines = [line for line in str(exception or '').splitlines() if line.strip()]
    return lines[-1].strip() if lines else ''


def wait_command(status, wait, step=HOST_STEP):
    """The shell words that wait, up to ``wait`` seconds, while the job's status file ``status`` still says
    "started" (async_wrapper rewrites it whole, one line of JSON, with the job's result when the job ends): checked
    every ``step`` seconds by the shell's own ``read`` and ``case``, with ``sleep`` the one command started per step
    (a ``grep`` per step doubled the CPU a long wait costs the host: 0.48 against 0.24 CPU-s in 15 s). Empty for
    no wait. A file that cannot be read ends the wait at once; the caller reads the file itself and decides."""
    steps = round(wait / step)
    if steps < 1:
        return ''
    return ('n=0; while [ "$n" -lt %d ]; do l=; { read -r l < %s; } 2>/dev/null; case $l in *%s*) ;; *) break;; esac; '
            'sleep %s; n=$((n+1)); done; ' % (steps, shlex.quote(status), shlex.quote('"started"'), step))


class ActionModule(ActionBase):
    _VALID_ARGS = frozenset(('jid', 'watch', 'patterns', 'total', 'label', 'timeout', 'poll', 'renew_lease'))

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        _valid, args = self.validate_argument_spec(argument_spec=dict(
            jid=dict(type='str', required=True),
            watch=dict(type='path'),
            patterns=dict(type='list', elements='str', default=['*.partial']),
            total=dict(type='int', default=0),
            label=dict(type='str', default='job'),
            timeout=dict(type='int', default=86400),
            poll=dict(type='float', default=5),
            renew_lease=dict(type='path'),
        ))
        async_dir = self._remote_expand_user(self.get_shell_option('async_dir', default='~/.ansible_async'))
        status_args = dict(jid=args['jid'], _async_dir=async_dir)
        started = time.monotonic()
        poll = max(0.2, args['poll'])
        # Each check waits on the host, up to ``poll`` seconds, for the job to end (HOST_STEP apart), so the wait ends
        # within HOST_STEP of the job instead of up to a whole ``poll`` later; progress lines come every ``poll``
        # seconds. A check that returns at once while the job runs (its status file not written yet, or a ``sleep``
        # without fractions) is followed by a pause on the controller: 0.2 s, backing off to ``poll``.
        interval = min(0.2, poll)
        last = (started, 0)
        shown = started
        unreadable = None
        host = (task_vars or {}).get('inventory_hostname', '')
        while True:
            # One light command per check (cat and find, no Python module): the job's status file and the sizes of
            # the files it writes. The host's cores belong to the job; a module per check would cost it ~0.3 s each.
            asked = max(0.0, min(poll, args['timeout'] - (time.monotonic() - started)))
            began = time.monotonic()
            state, done = self._peek(async_dir, args, asked)
            if state is not None and 'started' not in state:
                break
            if state is None:
                unreadable = unreadable or time.monotonic()
                if time.monotonic() - unreadable > 30:  # no status file: let async_status say why
                    break
            else:
                unreadable = None
            elapsed = time.monotonic() - started
            if elapsed > args['timeout']:
                result.update(failed=True, msg='%s did not finish within %d s (job %s)' % (args['label'], args['timeout'], args['jid']))
                return result
            if time.monotonic() - began < asked / 2:
                time.sleep(interval)
                interval = min(poll, interval * 2)
            now = time.monotonic()
            if now - shown < poll - 0.05:
                continue
            shown = now
            prefix = '  %s' % ('[%s] ' % host if host else '')
            if args['watch']:
                rate = (done - last[1]) / (now - last[0]) if now > last[0] and done >= last[1] else 0
                last = (now, done)
                display.display(prefix + progress_line(args['label'], done, args['total'], now - started, rate))
            else:
                display.display(prefix + '%s: running for %d s' % (args['label'], int(now - started)))
        if state is not None:
            # The finished job's status file is its result (async_wrapper renames it into place whole): take it as
            # async_status would return it and remove it, without two more module runs on the host.
            status = dict(state, finished=1, ansible_job_id=args['jid'])
            path = async_dir.rstrip('/') + '/' + args['jid']
            self._low_level_execute_command('rm -f -- %s' % shlex.quote(path), sudoable=True)
        else:
            status = self._execute_module(module_name='ansible.legacy.async_status', module_args=status_args, task_vars=task_vars)
            if not status.get('failed') and not status.get('finished'):
                result.update(failed=True, msg='the status file of %s (job %s) could not be read for 30 s' % (args['label'], args['jid']))
                return result
            self._execute_module(module_name='ansible.legacy.async_status', module_args=dict(status_args, mode='cleanup'),
                                 task_vars=task_vars)
        if status.get('failed') and status.get('finished') and 'invocation' not in status:
            error = exception_text(status.get('exception'))
            if error:
                # An exception the module did not handle: Ansible wrote only its summary.
                status['msg'] = '%s: the module stopped on an unexpected error: %s' % (args['label'], error)
            else:
                # The module gave no result of its own: async_wrapper reports only that its output did not parse.
                status['job_output'] = str(status.get('msg', ''))[-4000:]
                status['msg'] = ('%s: the module process ended without a result - killed (kill -9, out of memory) or '
                                 'crashed; what it left is reported in job_output' % args['label'])
        for key in ('started', 'finished', 'results_file'):  # async bookkeeping, not the job's result
            status.pop(key, None)
        result.update(status)
        result['waited'] = round(time.monotonic() - started, 1)
        return result

    def _peek(self, async_dir, args, wait=0):
        """(the job's status file as a dict, or None while it cannot be read; bytes in the watched files), read once
        the job has ended or ``wait`` seconds have passed (wait_command)."""
        status = async_dir.rstrip('/') + '/' + args['jid']
        command = wait_command(status, wait) + 'cat %s 2>/dev/null; echo; echo %s' % (shlex.quote(status), MARK)
        if args['watch']:
            names = []
            for pattern in args['patterns']:
                # a pattern with a slash is matched against the whole path (find -path), any other one against the name
                names += (['-o'] if names else []) + ['-path' if '/' in pattern else '-name', pattern]
            find = ['find', args['watch'], '-type', 'f', '('] + names + [')', '-printf', '%s\\n']
            command += '; ' + ' '.join(shlex.quote(a) for a in find) + ' 2>/dev/null'
        if args['renew_lease']:
            # The maintenance lease counts from the file's mtime (module_utils/_maintenance.py): the controller lives.
            touch = ['touch', '-c', args['renew_lease'].rstrip('/') + '/' + LEASE_NAME]
            command += '; ' + ' '.join(shlex.quote(a) for a in touch) + ' 2>/dev/null'
        res = self._low_level_execute_command(command, sudoable=True)
        out = res.get('stdout', '')
        head, _sep, sizes = out.partition(MARK)
        try:
            state = json.loads(head.strip())
        except ValueError:
            state = None
        if not isinstance(state, dict):
            state = None
        done = sum(int(line) for line in sizes.split() if line.isdigit())
        return state, done
