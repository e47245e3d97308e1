"""Panels of the studio: each ``<panel>_ui.py`` declares its state dataclass and its ``*_clicked``/``*_changed`` signals."""
