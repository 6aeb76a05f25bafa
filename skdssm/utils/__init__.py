"""Helpers shared by skdssm's modules.

:mod:`skdssm.utils._sklearn_compat` is the one place that imports scikit-learn's private
helpers; import them from there, never from ``sklearn.utils._*`` directly.
"""
