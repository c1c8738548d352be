"""models: every segmentation method, by name.

The registry and model cards (:mod:`.registry`), safe weights (:mod:`.weights`), network
architectures (:mod:`.nets`), network segmenters with one crop-predict-paste (:mod:`.network`,
:mod:`.inference`) and the shipped demo weights (``shipped/``).
"""
