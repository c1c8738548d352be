"""Reader-study sessions: the study folder (``study.json``, per-reader work, audit logs), blinded
and timed reading sessions with versioned autosaves and locks, and the coordinator's side
(init, status, import, export to the ``reader-study`` table). Qt-free; uses core, io and engine.
"""
