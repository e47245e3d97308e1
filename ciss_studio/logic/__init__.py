"""Panel logic of the studio: each ``<panel>_logic.py`` handles the signals of ``ui/<panel>_ui.py``."""
