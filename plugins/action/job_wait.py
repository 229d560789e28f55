# Copyright (c) appvault.backup developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wait for an async job and show its progress (bytes written, rate, time left) while it runs."""

from __future__ import annotations

import time

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()


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


class ActionModule(ActionBase):
    _VALID_ARGS = frozenset(('jid', 'watch', 'patterns', 'total', 'label', 'timeout', 'poll'))

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
        ))
        async_dir = self._remote_expand_user(self.get_shell_option('async_dir', default='~/.ansible_async'))
        status_args = dict(jid=args['jid'], _async_dir=async_dir)
        started = time.monotonic()
        poll = max(0.2, args['poll'])
        last = (started, 0)
        host = (task_vars or {}).get('inventory_hostname', '')
        while True:
            status = self._execute_module(module_name='ansible.legacy.async_status', module_args=status_args, task_vars=task_vars)
            if status.get('finished') or (status.get('failed') and 'started' not in status):
                break
            elapsed = time.monotonic() - started
            if elapsed > args['timeout']:
                result.update(failed=True, msg='%s did not finish within %d s (job %s)' % (args['label'], args['timeout'], args['jid']))
                return result
            time.sleep(poll)
            prefix = '  %s' % ('[%s] ' % host if host else '')
            if args['watch']:
                found = self._execute_module(module_name='ansible.legacy.find', task_vars=task_vars, module_args=dict(
                    paths=[args['watch']], patterns=args['patterns'], hidden=True, file_type='file', recurse=True))
                done = sum(f.get('size', 0) for f in found.get('files', []))
                now = time.monotonic()
                rate = (done - last[1]) / (now - last[0]) if now > last[0] and done >= last[1] else 0
                last = (now, done)
                display.display(prefix + progress_line(args['label'], done, args['total'], now - started, rate))
            else:
                display.display(prefix + '%s: running for %d s' % (args['label'], int(time.monotonic() - started)))
        self._execute_module(module_name='ansible.legacy.async_status', module_args=dict(status_args, mode='cleanup'), task_vars=task_vars)
        if status.get('failed') and status.get('finished') and 'invocation' not in status:
            # The module gave no result of its own: async_wrapper reports only that its output did not parse.
            status['job_output'] = str(status.get('msg', ''))[-4000:]
            status['msg'] = ('%s: the module process ended without a result - killed (kill -9, out of memory) or crashed; '
                             'what it left is reported in job_output' % args['label'])
        for key in ('started', 'finished', 'results_file'):  # async bookkeeping, not the job's result
            status.pop(key, None)
        result.update(status)
        result['waited'] = round(time.monotonic() - started, 1)
        return result
