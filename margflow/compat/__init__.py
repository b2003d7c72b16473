"""Drop-in layers that let scripts written for other packages run on margflow.

- :mod:`margflow.compat.margarine`: margarine 1.x's ``MAF``, ``KDE``,
  ``clusterMAF`` and ``calculate``.
"""
