"""Slicer logic of CISSegmentation, shared by the desktop module and the browser studio.

Only ``widget`` imports Qt. Every logic class is given the MRML scene in its constructor (no
``slicer.mrmlScene``/``slicer.app`` singletons), so the package runs on PyPI's ``slicer-core`` and in
trame-slicer. The engine runs in its own process (``job_runner``); torch is never imported here.
"""
