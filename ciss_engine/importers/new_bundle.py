"""Writing an imported model as a new bundle, all at once: the whole bundle folder is built in a staging folder
beside the output and renamed into place when complete, so the output is either absent or a whole bundle."""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from ..atomic import ensure_writable_dir, staged_directory
from ..bundle import Bundle, BundleVersion
from ..errors import InputError


def check_output_or_raise(output: Path) -> None:
    """Refuse an output folder that holds anything (nothing is ever overwritten); check its parent is writable."""
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InputError(
            f"{output} already exists and is not empty",
            "give a new folder for the imported bundle (it is created), or empty this one; nothing was overwritten",
        )
    ensure_writable_dir(output.parent)


def write_new_bundle(output: Path, write: Callable[[Path], None], extra_files: dict[str, Path]) -> BundleVersion:
    """``write(root)`` writes the bundle's versions into a staging root; ``extra_files`` (path in the bundle → source
    file) are copied in; then the staging folder becomes ``output``. Returns the current version, read back."""
    check_output_or_raise(output)
    if output.exists():
        output.rmdir()  # an empty folder the user made: the staged bundle takes its place
    try:
        with staged_directory(output) as staging:
            write(staging)
            for name, source in extra_files.items():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, staging / name)
    except FileExistsError as error:
        raise InputError(f"{output} appeared while the bundle was being written", "another process writes there; give a new folder") from error
    return Bundle.open_or_raise(output).load()
