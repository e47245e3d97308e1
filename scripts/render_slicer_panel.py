"""Render the Slicer module panel (``Resources/UI/CISSegmentation.ui``) to a PNG for the README, outside Slicer.

Slicer's CTK/qMRML widgets are drawn as their Qt base classes and filled with illustrative content (a
bundle's real ``classes.json``, a learning run in progress): the picture shows the panel's layout, not a
live Slicer session. Needs PySide6, which is not a project dependency:

    pip install PySide6-Essentials
    QT_QPA_PLATFORM=offscreen python scripts/render_slicer_panel.py UI_FILE OUT.png CLASSES_JSON
"""
from __future__ import annotations

import json
import re
import sys

from PySide6.QtCore import QBuffer
from PySide6.QtGui import QColor
from PySide6.QtUiTools import QUiLoader
from PySide6.QtWidgets import QApplication, QComboBox, QGroupBox, QLabel, QLineEdit, QPlainTextEdit, QProgressBar, QTableWidget, QTableWidgetItem, QWidget

QT_BASE_OF = {
    "qMRMLWidget": "QWidget", "ctkCollapsibleButton": "QGroupBox", "ctkPathLineEdit": "QLineEdit", "qMRMLNodeComboBox": "QComboBox",
    "qMRMLSegmentsTableView": "QTableWidget", "ctkColorPickerButton": "QPushButton", "ctkDirectoryButton": "QPushButton",
}


def load_panel(ui_path: str) -> QWidget:
    text = open(ui_path, encoding="utf-8").read()
    for custom, base in QT_BASE_OF.items():
        text = text.replace(f'class="{custom}"', f'class="{base}"')
    text = re.sub(r"<customwidgets>.*?</customwidgets>", "", text, flags=re.S)
    buffer = QBuffer()
    buffer.setData(text.encode())
    buffer.open(QBuffer.ReadOnly)
    panel = QUiLoader().load(buffer)
    for box in panel.findChildren(QGroupBox):  # ctkCollapsibleButton's "text" is a group box's title
        box.setTitle(str(box.property("text") or ""))
    return panel


def fill_table(table: QTableWidget, rows: list[tuple[str, ...]]) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            table.setItem(r, c, QTableWidgetItem(value))
    table.setMaximumHeight(150)


def fill_example(panel: QWidget, classes: list[dict]) -> None:
    organs = panel.findChild(QTableWidget, "organsTableWidget")
    fill_table(organs, [(str(c["label"]), c["name"], "", c["type"]["code"]) for c in classes])
    for r, c in enumerate(classes):
        organs.item(r, 2).setBackground(QColor(*c["rgb"]))
    fill_table(panel.findChild(QTableWidget, "versionsTableWidget"), [("1.1.0", "current", "6 organs", "step 2"), ("1.0.0", "published", "4 organs", "base")])
    fill_table(panel.findChild(QTableWidget, "trainingSetTableWidget"), [("ts_abdpelvis", "annotations", "pancreas 695"), ("chest_4x", "annotations", "pancreas 2978")])
    panel.findChild(QLineEdit, "bundlePathLineEdit").setText("site_model")
    for name, value in (("bundleVersionComboBox", "1.1.0 (current)"), ("inputVolumeSelector", "ts_abdpelvis CT"), ("deviceComboBox", "auto"),
                        ("presetComboBox", "thorough (1000 iterations)"), ("newOrganNameComboBox", "pancreas"), ("exportFormatComboBox", "DICOM RTSTRUCT + SEG")):
        panel.findChild(QComboBox, name).addItem(value)
    progress = panel.findChild(QProgressBar, "progressBar")
    progress.setValue(62)
    progress.setFormat("learn 620/1000, about 4 min 10 s left")
    panel.findChild(QLabel, "guardLabel").setText("Forgetting guard: waiting for the step to finish")
    panel.findChild(QLabel, "engineStatusLabel").setText("Engine ready: ciss 0.1.0 (torch 2.13.0, CPU)")
    panel.findChild(QPlainTextEdit, "logTextEdit").setPlainText("learning pancreas on 2 CT(s) with pcdd, 1000 iterations on cpu; parent version 1.0.0")
    for name in ("segmentsTableView", "logTextEdit"):
        panel.findChild(QWidget, name).setMaximumHeight(90)


def main() -> None:
    ui_path, output, classes_path = sys.argv[1:4]
    app = QApplication([])
    panel = load_panel(ui_path)
    fill_example(panel, json.load(open(classes_path, encoding="utf-8"))["classes"])
    panel.resize(430, panel.sizeHint().height())
    panel.show()
    app.processEvents()
    panel.grab().save(output)


if __name__ == "__main__":
    main()
