"""SimpleITK's GetArrayViewFromImage shares the image's buffer without keeping the image alive:
a view of a temporary (``GetArrayViewFromImage(f(x))``) reads freed memory and crashed the test
process (segmentation fault). This check keeps such calls out of the package, tests and benchmarks."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def views_of_temporaries(tree: ast.AST) -> list[int]:
    return [n.lineno for n in ast.walk(tree)
            if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "GetArrayViewFromImage"
            and n.args and isinstance(n.args[0], (ast.Call, ast.Compare, ast.BinOp, ast.UnaryOp))]


def test_no_array_view_of_a_temporary_image():
    files = [*ROOT.joinpath("BreastTumorSeg").rglob("*.py"), *ROOT.joinpath("Testing").glob("*.py"),
             *ROOT.joinpath("benchmarks").glob("*.py")]
    found = {str(p.relative_to(ROOT)): lines for p in files
             if (lines := views_of_temporaries(ast.parse(p.read_text(encoding="utf-8"))))}
    assert found == {}, "keep the image in a variable, or use GetArrayFromImage: " + repr(found)


def test_the_check_sees_a_view_of_a_temporary():
    bad = ast.parse("a = sitk.GetArrayViewFromImage(sitk.ReadImage('x.nii'))\n"
                    "b = sitk.GetArrayViewFromImage(img > 0)\nc = sitk.GetArrayViewFromImage(img)\n")
    assert views_of_temporaries(bad) == [1, 2]
