"""core: what every other part of the engine stands on.

Errors, progress and cancellation, the DCE exam (phases, times, one assembly for every source),
the result types and small SimpleITK image helpers. Imports nothing else from the package.
"""
