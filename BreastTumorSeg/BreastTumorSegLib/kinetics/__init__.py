"""kinetics: contrast kinetics without a trained model.

Voxel-wise maps (PE, SER, time to peak, curve type; :mod:`.maps`), I-SPY functional tumor volume
(:mod:`.ftv`), one-point lesion growth (:mod:`.seeded`) and curve/overlay pictures (:mod:`.plots`).
"""
