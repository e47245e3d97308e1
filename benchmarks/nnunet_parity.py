"""Parity of an imported nnU-Net model with nnU-Net's own predictor (docs/import.md): a tiny model made by nnunetv2's
planner and trainer (plans at 8 mm), three phantom CTs resampled to 5, 5 and 7 mm, `ciss segment` against
`nnUNetPredictor` (mirroring on); prints the share of equal voxels per CT.

Usage (repository root, test extras installed): OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nnunet_parity.py [OUTPUT]
"""
import sys, shutil
from pathlib import Path
import numpy as np, nibabel as nib
sys.path[:0] = ["Testing", "Testing/engine"]  # the tests' nnU-Net model maker and helpers
from ciss_test_helpers import TINY_PHANTOM, run_cli
from ciss_engine.phantom import write_cohort
from nnunet_models import make_nnunet_model, predict_with_nnunet
from test_import_nnunet import _resampled, _agreement
root = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/output/nnunet_parity"); shutil.rmtree(root, ignore_errors=True); root.mkdir()
cases = write_cohort(root/"cases", 4, 0, **TINY_PHANTOM)
folder = make_nnunet_model(root/"m", cases[:2])
assert run_cli("import","-i",folder,"-o",root/"b","--quiet")==0
for i, sp in ((1,5.0),(2,5.0),(3,7.0)):
    ct=_resampled(cases[i]/"image.nii.gz", sp, root/f"ct{i}.nii.gz")
    assert run_cli("segment","-b",root/"b","-i",ct,"-o",root/f"o{i}.nii.gz","--no-preview","--quiet")==0
    predict_with_nnunet(folder, ct, root/f"t{i}.nii.gz")
    t=np.asarray(nib.load(str(root/f"t{i}.nii.gz")).dataobj)
    print("case", i, "spacing", sp, "agreement", _agreement(root/f"o{i}.nii.gz", root/f"t{i}.nii.gz"), "labels", np.bincount(t.ravel()))
