"""pytest plugin loaded by ``make mutation`` only (``-p mutmut_compat``).

mutmut 3.3.1's stats collector reads ``item._nodeid``, which pytest 9 no longer has (it is
``item.nodeid``); without this every stats run fails with an AttributeError at the first
teardown. Nothing else changes.
"""

from __future__ import annotations

from _pytest import nodes

if not hasattr(nodes.Node, "_nodeid"):
    nodes.Node._nodeid = property(lambda self: self.nodeid)  # type: ignore[attr-defined]
