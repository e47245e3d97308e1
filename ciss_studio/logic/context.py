"""What every panel logic is given besides the trame server (trame-slicer's "server and app" recipe)."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trame_slicer.core import SlicerApp

    from ciss_engine.events import EventSink
    from CISSegmentationLib.workflow_logic import WorkflowLogic

    from .session import StudioSession
    from .views import StudioViews


@dataclasses.dataclass(frozen=True)
class StudioContext:
    """The Slicer core of this app (no ``slicer.app`` singletons), the workflow on its scene, the session data.

    ``sink`` receives the studio's own events (``server_started``, ``job_finished``) for scripts and tests.
    """

    slicer_app: SlicerApp
    workflow: WorkflowLogic
    session: StudioSession
    views: StudioViews
    sink: EventSink | None = None
