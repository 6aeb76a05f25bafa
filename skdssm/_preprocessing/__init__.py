"""Private implementation of :mod:`skdssm.preprocessing`; import from there."""
