"""Game days and CI: experiments written as ``*.chaos.yaml`` files.

:mod:`chaoskit.gameday.spec` turns a file into checked, frozen objects
(:func:`~chaoskit.gameday.spec.load_experiment`), or refuses it before
anything runs, naming the file, line, field and fix of every problem. The
file's JSON Schema, for editors, is ``chaoskit-experiment.schema.json``
beside it (published as ``schema/chaoskit-experiment.schema.json``).
"""
