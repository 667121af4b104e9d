"""Tools built on the public API: ``compare`` (CPU/GPU agreement and speed), ``problems``
(the models and data they train), ``timing`` and ``bench`` (speed against hand-written code).

Nothing here is imported by ``import portable_nn``; the command line
(``python -m portable_nn compare|bench``) imports what it runs. Modules here
import only public modules of the library (a test checks this).
"""
