"""The web reader station: a reader-study session in a browser (``breasttumorseg study serve``),
over the study engine (``study/``) with one real MRML scene per reader on the server (``slicer/``).
Only this package imports the web server (aiohttp); nothing but the CLI imports it.
"""
