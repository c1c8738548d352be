"""batch: many exams in one run — cases found in a folder or a manifest, models loaded once per
worker, resumable all-or-nothing outputs, failures recorded, a worklist sorted by doubt; run by
local processes or by Ray actors. Uses the engine's per-exam path, never a copy of it.
"""
