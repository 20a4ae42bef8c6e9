"""``rgbdcast bench``: measurements of the data path, next to the tools users would otherwise pick,
written to BENCHMARKS.md with the machine and the exact command.

One module per suite (:mod:`~rgbdcast.bench.codecs`, :mod:`~rgbdcast.bench.e2e`,
:mod:`~rgbdcast.bench.peers`, :mod:`~rgbdcast.bench.gateway`, :mod:`~rgbdcast.bench.web`,
:mod:`~rgbdcast.bench.zenoh`, :mod:`~rgbdcast.bench.soak`), each with a ``cmd_<suite>(args)``.
Suites share the harness (:mod:`~rgbdcast.bench.harness`: processes, ports, CPU spans,
BENCHMARKS.md sections) and the runs several of them measure (:mod:`~rgbdcast.bench.e2erun`,
:mod:`~rgbdcast.bench.peerrun`); they never import each other or the runner
(:mod:`rgbdcast.cli.bench`). The processes a run starts are modules too:
:mod:`~rgbdcast.bench.receivers`, :mod:`~rgbdcast.bench.peerprocs`, and the ``sub`` entry points
of the zenoh and soak suites.
"""
