"""What chaoskit keeps between steps and between runs, below the faults and above the adapters.

* :mod:`.ledger`: the write-ahead ledger of faults on this machine (what to undo when a run dies);
* :mod:`.locks`: node and cluster locks among this machine's runs;
* :mod:`.owners`: whether the process that owns a fault, a namespace or a lock still runs.
"""
