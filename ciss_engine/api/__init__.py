"""The contract between the engine and its front ends (the Slicer module, the studio, scripts).

Torch-free and standard-library only (a test checks it), so both sides of the process boundary import
the same declarations instead of re-deriving them from strings.
"""
