"""preprocess: from the loaded exam to what a model sees.

Motion correction (:mod:`.registration`), the classical whole-breast region and body foreground
(:mod:`.breast_region`) and intensity harmonization / network inputs (:mod:`.harmonize`).
"""
