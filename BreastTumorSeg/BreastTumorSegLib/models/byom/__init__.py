"""Bring your own model: nnU-Net v2 trained-model folders and MONAI bundles used as segmenters,
with the DCE-phase-to-channel mapping (sidecar ``breasttumorseg.json`` or ``--channels``) and
SHA-256 pinning of their pickled checkpoints (registered cards in the user's models folder)."""
