"""Each app holds what its servables declare (`service.servables.wiring`), nothing global."""

from __future__ import annotations

from pathlib import Path

from service.api.main import SERVABLES, create_app
from service.servables import dinop, imn
from training.jobs import JOBS


def test_an_app_wires_only_the_servables_it_is_given(tmp_path: Path) -> None:
    only_imn = create_app(artifacts_dir=tmp_path, poll_interval_s=0, servables=[imn.SERVABLE])
    only_dinop = create_app(artifacts_dir=tmp_path, poll_interval_s=0, servables=[dinop.SERVABLE])
    assert [u.model for u in only_imn.state.updaters] == ["imn"]
    assert only_imn.state.sales_hooks == []
    assert only_dinop.state.updaters == []
    assert only_dinop.state.sales_hooks == [dinop.SERVABLE.on_sales]
    # The load hook went to that app's registry only.
    assert only_imn.state.registry._hooks.keys() == {"imn"}
    assert not only_dinop.state.registry._hooks


def test_the_default_app_serves_every_trainable_model(tmp_path: Path) -> None:
    app = create_app(artifacts_dir=tmp_path, poll_interval_s=0)
    assert sorted(w.model for w in app.state.servables) == sorted(JOBS)
    assert [s.model for s in SERVABLES] == [w.model for w in app.state.servables]
    # Building a second app adds nothing to the first.
    before = list(app.state.updaters)
    create_app(artifacts_dir=tmp_path, poll_interval_s=0)
    assert app.state.updaters == before
