"""core: what every other part of the engine stands on.

Errors, progress and cancellation, the DCE exam (phases, times, one assembly for every source),
the result types, small SimpleITK image helpers and the rules for values users type
(:mod:`.values`). Imports nothing else from the package.
"""
