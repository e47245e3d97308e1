"""One module per ``ciss`` sub-command; each has ``add_arguments(parser)`` and ``run(args, sink)``.

Command modules import torch, MONAI and friends inside ``run`` only, so building the parser and the
light commands (``info --json``, ``--list-classes``) answer without loading torch.
"""

COMMANDS: dict[str, str] = {
    "info": "Show a bundle: organs, version, history (no torch needed).",
    "versions": "List a bundle's versions and which is current.",
    "rollback": "Make an earlier version of a bundle current again.",
    "verify": "Check every version of a bundle against the checksums recorded when it was written.",
    "train": "Train a base bundle on fully labelled CTs.",
    "import": "Make a bundle from a model a site already runs (an nnU-Net v2 model, or a MONAI bundle with a SegResNet).",
    "learn": "Add new organs to a bundle from CTs labelled only for the new organs.",
    "adapt": "Adapt a bundle's organs to a new site's CTs (another scanner), labelled for all or some of them.",
    "segment": "Segment all organs of a bundle on a CT.",
    "export": "Write a label map made on a DICOM CT as DICOM RTSTRUCT and SEG that reference it.",
    "export-model": "Write a bundle imported from nnU-Net, grown or not, back as an nnU-Net v2 model folder.",
    "evaluate": "Segment CTs and score them against labels (DSC, HD95).",
    "protocol": "Run the paper's class-incremental protocol (4-4, 4-2, 2-2, 4-1, 7-1) and compare strategies.",
    "phantom": "Write synthetic abdominal CTs with 8 organ labels.",
    "demo": "Build a base bundle and segment CTs end to end: a table and preview PNGs.",
}


def module_name(command: str) -> str:
    """The module of a command: ``import`` is a Python keyword, so its module is ``import_model``."""
    return "import_model" if command == "import" else command.replace("-", "_")
