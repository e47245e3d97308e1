"""Slicer logic of CISSegmentation, shared by the desktop module and the browser studio.

Only ``widget`` imports Qt. Every logic class is given the MRML scene in its constructor (no
``slicer.mrmlScene``/``slicer.app`` singletons), so the package runs on PyPI's ``slicer-core`` and in
trame-slicer. The engine runs in its own process (``job_runner``); torch is never imported here.

The modules import the engine's torch-free parts (errors, organ registry), so the engine is put on
``sys.path`` here, before any of them loads (``engine_location``).
"""
from .engine_location import put_engine_on_path_or_raise

put_engine_on_path_or_raise()
