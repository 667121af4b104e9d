"""Tools built on the public API: ``compare`` (CPU/GPU agreement and speed), ``problems``
(the models and data it trains), ``timing``, ``environment``, ``plotting`` (its PNG) and
``arguments`` (command-line argument types shared with the examples and scripts).

Nothing here is imported by ``import portable_nn``; the command line
(``python -m portable_nn compare``) imports what it runs. Modules here
import only public modules of the library (a test checks this). The speed
benchmarks live outside the package, in ``benchmarks/`` (``python -m benchmarks``).
"""
