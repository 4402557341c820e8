"""The factory commands documented to run without torch (the optional ``train`` extra) do.

Each runs in a subprocess where importing torch fails, as on a node without ``.[train]``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

NO_TORCH = textwrap.dedent("""
    import importlib.abc, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, NoTorch())
""")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", NO_TORCH + textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300, check=False)


def test_format_bench_quantizes_its_matmuls_without_torch() -> None:
    """format-bench's per-MatMul part quantized through factory.quantize, which imported torch (via export)."""
    res = _run("""
        from tiny_node.factory.format_bench import matmul_bench
        out = matmul_bench({(2, 16, 16)}, 10)
        assert set(out) == {(2, 16, 16)} and len(out[(2, 16, 16)]) == 2, out
        assert "torch" not in sys.modules
        print("ok")
    """)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


def test_the_factory_commands_that_need_torch_say_it_is_the_train_extra() -> None:
    res = _run("""
        from tiny_node.cli import main
        sys.exit(main(["model", "build", "--config", "tiny", "--out", "/nonexistent/never-made"]))
    """)
    assert res.returncode == 2
    assert "needs the 'train' extra (pip install -e '.[train]')" in res.stderr and "torch" in res.stderr
