"""The service must import and build its app without torch (serving images do not ship it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_service_imports_no_torch() -> None:
    code = textwrap.dedent(
        """
        import sys
        import service.api.main
        import service.main
        from service.api.main import create_app

        create_app(artifacts_dir="does-not-exist", poll_interval_s=0)
        leaked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        assert not leaked, leaked
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
