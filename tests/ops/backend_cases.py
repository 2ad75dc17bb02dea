"""Backend cases shared by the op tests: (backend, device, dtype, rtol) tuples -> pytest params,
CUDA cases marked ``cuda`` and C++ cases skipped when the extension is not built."""
import pytest

from eoflow_fast.ops._dispatch import cpp_ops

needs_cpp = pytest.mark.skipif(cpp_ops() is None, reason="C++ extension not built")


def case_params(cases):
    out = []
    for c in cases:
        marks = [pytest.mark.cuda] if c[1] == "cuda" else ([needs_cpp] if c[0] == "cpp" else [])
        out.append(pytest.param(*c, marks=marks, id=f"{c[0]}-{c[1]}-{str(c[2])[6:]}"))
    return out
