"""coursekit: the course's own machinery, apart from the library learners read (gvlib).

- ``exercises``: exercises/ built from the masters in solutions/, and the check that nothing leaked;
- ``execute``: re-execute notebooks in place;
- ``grade``: the autograder (its command line and report); ``sandbox``: the student's sandboxed process;
  ``runner``: the trusted process that runs the tests; ``wire``: the data-only format between them;
- ``nbtime``: a pytest plugin that prints each notebook's run time under nbval;
- ``bench``: the speed table of gvlib's estimator and of a training epoch;
- ``testing``: small assertion helpers that the masters' test cells import.

Command line: ``coursekit build|check|execute|grade|bench`` (or ``python -m coursekit ...``). Paths come
from arguments; the defaults are relative to the current directory (run it from the course's root).
Importing this package imports nothing from Jupyter; each command imports what it needs.
"""
__version__ = "0.2.0"
