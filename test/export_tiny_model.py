"""Export the suite's tiny model to a folder: ``python test/export_tiny_model.py OUT_DIR``.

The robot lanes of ``make test`` run without torch, as a robot does; they are handed the model
the main lane exports here with the same code as the ``tiny_onnx_model`` fixture.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import make_tiny_checkpoint  # noqa: E402

from drn_perception.deploy.export import export_onnx  # noqa: E402

if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = make_tiny_checkpoint(out / "tiny.pt")
    print(export_onnx(checkpoint, out / "tiny.onnx", check=False))
