"""evaluation: is a segmentation good, and is the model as good as the readers?

Spacing-aware metrics (:mod:`.metrics`), statistics (:mod:`.stats`), the multi-reader study of
Hirsch et al. (:mod:`.readerstudy`) and its report (:mod:`.report`). Uses only core and io.
"""
