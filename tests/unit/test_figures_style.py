from __future__ import annotations

import pandas as pd
import pytest

from experiments.analysis import figures


def test_style_uses_a_cjk_font_and_chinese_labels_render(tmp_path: object) -> None:
    font = figures.setup_style()
    assert "CJK" in font or "Han" in font or "WenQuanYi" in font
    stats = pd.DataFrame(
        {
            "cell": ["a", "b"],
            "mean": [0.99, 0.5],
            "std": [0.01, 0.1],
            "repetitions": [3, 3],
            "n_events": [300, 300],
        }
    )
    fig = figures.comparison_bar(stats, "delivery_rate", title="送达率对比")
    paths = figures.save(fig, "unit", "delivery_rate", tmp_path)  # type: ignore[arg-type]
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert all(p.stat().st_size > 5_000 for p in paths)


def test_missing_glyphs_fail_loudly() -> None:
    with pytest.raises(figures.MissingGlyphsError, match="no glyph"):
        figures.check_glyphs("送达 \U0001fae0")  # a glyph no CJK text font has


def test_no_cjk_font_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(figures, "CJK_FONTS", ("No Such Font CJK",))
    with pytest.raises(figures.MissingGlyphsError, match="fonts-noto-cjk"):
        figures.setup_style()


def test_every_metric_has_a_chinese_label() -> None:
    for metric, (zh, en, _) in figures.METRIC_LABELS.items():
        assert zh and en, metric
        assert any("\u4e00" <= ch <= "\u9fff" for ch in zh), metric


def test_a_font_cache_built_before_the_font_was_installed_still_finds_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from matplotlib import font_manager

    stale = [f for f in font_manager.fontManager.ttflist if "CJK" not in f.name]
    monkeypatch.setattr(font_manager.fontManager, "ttflist", stale)
    assert figures.cjk_font() in figures.CJK_FONTS


def test_cell_labels_and_confidence_intervals() -> None:
    assert figures.cell_label("ack=three_state+retry=none") == "三态确认\nthree-state\n不重试\nnone"
    assert figures.cell_label("cache=l1+l2") == "L1+L2"
    assert figures.cell_axis_title(["cache=l1+l2", "cache=off"]).startswith("缓存层级")
    assert figures.ci95(1.0, 1) == 0.0  # one repetition: no interval
    assert figures.ci95(1.0, 3) == pytest.approx(4.303 / 3**0.5)
    assert figures.ci95(2.0, 100) == pytest.approx(1.96 * 2.0 / 10)
