"""Stand-in for the get-pip bootstrap script ansible-test downloads from a host this project cannot reach.

ansible-test runs it as __main__ inside a fresh virtual environment with pip's own arguments
(install pip==X setuptools wheel ...). Bootstrap pip from the wheel the standard library bundles
(ensurepip), then let that pip carry out the same install from the package index.
"""

import ensurepip
import os
import runpy
import sys

saved = dict(os.environ)
ensurepip.bootstrap(upgrade=True)
# ensurepip switches pip's configuration off for this process; the install below needs the machine's settings.
os.environ.clear()
os.environ.update(saved)
# get-pip implies 'install' and has two options of its own, which pip itself does not know.
args = [arg for arg in sys.argv[1:] if arg not in ('--no-setuptools', '--no-wheel')]
sys.argv = ['pip', 'install', *args]
runpy.run_module('pip', run_name='__main__', alter_sys=True)
