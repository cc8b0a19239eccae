"""The thesis figure style: one look for every chart, Chinese labels in a CJK font, error bars from repetitions.

The font is Noto Sans CJK SC (``fonts-noto-cjk``, installed by .ci/run). A missing font or a missing glyph is an
error, never a chart with empty boxes: :func:`setup_style` raises :class:`MissingGlyphsError` if no CJK font is
found, and turns matplotlib's "Glyph ... missing" warning into an exception.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
from cycler import cycler

mpl.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import font_manager
from matplotlib.figure import Figure

CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Serif CJK SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
)
PALETTE = ("#1f4e79", "#c55a11", "#548235", "#7030a0", "#bf9000", "#2e75b6", "#833c0b")

# metric -> (Chinese label, English label, unit)
METRIC_LABELS: dict[str, tuple[str, str, str]] = {
    "delivery_rate": ("送达率", "delivery rate", ""),
    "delivery_rate_acked": ("已确认消息送达率", "delivery rate (acked sends)", ""),
    "send_success_rate": ("发送成功率", "send success rate", ""),
    "lost_deliveries": ("丢失投递数", "lost deliveries", "条"),
    "duplicate_rate": ("重复率", "duplicate rate", ""),
    "duplicate_deliveries": ("重复投递数", "duplicate deliveries", "条"),
    "streams_in_order_rate": ("会话有序率", "conversations in order", ""),
    "order_violations": ("乱序次数", "order violations", "次"),
    "sender_order_violations": ("发送方乱序次数", "sender-order violations", "次"),
    "send_ack_p50_ms": ("发送→确认 P50", "send→ack p50", "ms"),
    "send_ack_p99_ms": ("发送→确认 P99", "send→ack p99", "ms"),
    "send_deliver_p50_ms": ("发送→送达 P50", "send→deliver p50", "ms"),
    "send_deliver_p99_ms": ("发送→送达 P99", "send→deliver p99", "ms"),
    "send_deliver_all_p50_ms": ("发送→可见 P50（推送或同步）", "send→visible p50 (push or sync)", "ms"),
    "send_deliver_all_p99_ms": ("发送→可见 P99（推送或同步）", "send→visible p99 (push or sync)", "ms"),
    "recovered_by_sync_rate": ("经同步补齐的比例", "share recovered by sync", ""),
    "push_order_violations": ("推送乱序数（缓冲前）", "push order violations (before buffer)", ""),
    "push_duplicates": ("重复推送数（缓冲前）", "duplicate pushes (before buffer)", ""),
    "push_duplicate_rate": ("重复推送率（缓冲前）", "duplicate push rate (before buffer)", ""),
    "push_streams_in_order_rate": ("推送有序的会话流比例", "streams pushed in order", ""),
    "reconnect_success_rate": ("重连成功率", "reconnect success rate", ""),
    "reconnect_p50_ms": ("重连耗时 P50", "reconnect time p50", "ms"),
    "reconnect_p99_ms": ("重连耗时 P99", "reconnect time p99", "ms"),
    "offline_push_success": ("离线推送成功率", "offline push success", ""),
    "offline_push_p99_ms": ("离线消息补发 P99", "offline delivery p99", "ms"),
    "server_retries": ("服务端重试次数", "server retries", "次"),
    "server_dead_letters": ("死信数", "dead letters", "条"),
    "server_dedup_hits": ("去重命中数", "dedup hits", "次"),
    "connected": ("在线连接数", "connections", "个"),
    "server_cpu_median_percent": ("服务端 CPU（中位数）", "server CPU (median)", "%"),
    "server_rss_max_mib": ("服务端内存峰值", "server memory (max RSS)", "MiB"),
    "sent_per_s": ("发送吞吐", "messages sent", "条/秒"),
    "delivered_per_s": ("投递吞吐", "deliveries", "条/秒"),
    "history_p99_ms": ("历史查询 P99", "history query p99", "ms"),
    "history_read_p99_ms": ("历史翻页 P99（客户端）", "history page p99 (client)", "ms"),
    "history_hot_p50_ms": ("热数据历史页 P50", "history page, hot p50", "ms"),
    "history_hot_p99_ms": ("热数据历史页 P99", "history page, hot p99", "ms"),
    "history_warm_p50_ms": ("温数据历史页 P50", "history page, warm p50", "ms"),
    "history_warm_p99_ms": ("温数据历史页 P99", "history page, warm p99", "ms"),
    "history_cold_p50_ms": ("冷数据历史页 P50", "history page, cold p50", "ms"),
    "history_cold_p99_ms": ("冷数据历史页 P99", "history page, cold p99", "ms"),
    "history_error_rate": ("历史查询失败率", "history read error rate", ""),
    "history_skipped_rate": (
        "未发出的历史查询比例（客户端限流）",
        "history reads skipped (client back-pressure)",
        "",
    ),
    "cache_hit_rate": ("缓存命中率", "cache hit rate", ""),
    "backend_mariadb_primary_cpu_s": ("MySQL 主库 CPU 时间", "MySQL primary CPU time", "s"),
    "backend_mariadb_replica_cpu_s": ("MySQL 从库 CPU 时间", "MySQL replica CPU time", "s"),
    "replica_read_share": ("从库承担的读比例", "share of user-store reads served by the replica", ""),
    "replica_fallbacks": ("回退到主库的从库读", "replica reads served by the primary", "次"),
    "rest_search_p99_ms": ("用户搜索 P99（客户端）", "user search p99 (client)", "ms"),
    "rest_requests_p99_ms": ("好友申请列表 P99（客户端）", "friend-request list p99 (client)", "ms"),
    "rest_befriend_p99_ms": ("发送好友申请 P99（客户端）", "send friend request p99 (client)", "ms"),
    "rest_error_rate": ("账户接口失败率", "account call error rate", ""),
}


# The research plan's targets, drawn as a dashed line where a figure shows the metric: (value, "at least"/"at most").
TARGETS: dict[str, tuple[float, str]] = {
    "delivery_rate": (0.999, "≥"),
    "delivery_rate_acked": (0.999, "≥"),
    "duplicate_rate": (0.001, "≤"),
    "push_duplicate_rate": (0.001, "≤"),
    "streams_in_order_rate": (1.0, "≥"),
    "push_streams_in_order_rate": (1.0, "≥"),
    "send_deliver_p99_ms": (100.0, "≤"),
    "send_deliver_all_p99_ms": (100.0, "≤"),
    "send_deliver_p50_ms": (100.0, "≤"),
    "history_p99_ms": (50.0, "≤"),
    "history_read_p99_ms": (50.0, "≤"),
    "history_hot_p99_ms": (50.0, "≤"),
    "history_warm_p99_ms": (50.0, "≤"),
    "history_cold_p99_ms": (50.0, "≤"),
    "cache_hit_rate": (0.9, "≥"),
    "reconnect_success_rate": (0.95, "≥"),
    "sent_per_s": (5000.0, "≥"),
}

# How a cell's parameter is named on an axis (the matrix key's last part) and how its values read.
PARAM_LABELS: dict[str, str] = {
    "ack": "ACK 策略\nACK strategy",
    "retry": "重试策略\nretry policy",
    "dedup": "去重策略\nde-duplication",
    "cache": "缓存层级\ncache tiers",
    "bus": "跨节点总线\ncross-node bus",
    "store": "存储后端\nstore backend",
    "users": "并发用户数\nconcurrent users",
    "backoff_max_s": "重连退避上限 (s)\nreconnect backoff cap (s)",
}
VALUE_LABELS: dict[str, str] = {
    "three_state": "三态确认\nthree-state",
    "off": "关闭\noff",
    "none": "不重试\nnone",
    "fixed": "固定间隔\nfixed",
    "exponential": "指数退避\nexponential",
    "memory": "内存\nmemory",
    "l1": "本地 L1\nL1",
    "l2": "Redis L2\nL2",
    "l1+l2": "L1+L2",
    "sqlite": "SQLite",
    "mysql": "MySQL",
    "mongo": "MongoDB\n(nx-27017 替身 stand-in)",
    "redis": "Redis",
    "rabbitmq": "RabbitMQ",
    "mqtt": "MQTT",
    "all_hot": "全部热存储\nall hot",
    "warm_sqlite": "温 SQLite + 冷归档\nwarm SQLite\n+ cold files",
    "warm_mysql": "温 MySQL + 冷归档\nwarm MySQL\n+ cold files",
}

# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom (the normal 1.96 beyond): written out
# rather than importing SciPy for one table.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def ci95(std: float, repetitions: int) -> float:
    """Half-width of the 95 % confidence interval of a mean over ``repetitions`` runs (0 when fewer than 2)."""
    if repetitions < 2 or not np.isfinite(std):
        return 0.0
    t = _T975[repetitions - 2] if repetitions - 1 <= len(_T975) else 1.96
    return float(t * std / np.sqrt(repetitions))


def _cell_parts(cell: str) -> list[str]:
    """``ack=three_state+retry=none`` -> its ``key=value`` parts (a value may hold a ``+``: ``cache=l1+l2``)."""
    return re.split(r"\+(?=[A-Za-z0-9_.]+=)", cell)


def cell_label(cell: str) -> str:
    """``ack=three_state+retry=none`` -> readable lines of the values (the keys go to the axis title)."""
    parts = []
    for part in _cell_parts(cell):
        _, _, value = part.partition("=")
        value = value or part
        parts.append(VALUE_LABELS.get(value, value))
    return "\n".join(parts)


def cell_axis_title(cells: Sequence[str]) -> str:
    keys: list[str] = []
    for cell in cells:
        for part in _cell_parts(cell):
            key, sep, _ = part.partition("=")
            if sep and key not in keys:
                keys.append(key)
    if not keys:
        return "实验组\ncell"
    return " × ".join(PARAM_LABELS.get(k, k).replace("\n", " / ") for k in keys)


class MissingGlyphsError(RuntimeError):
    pass


def label(metric: str) -> str:
    zh, en, unit = METRIC_LABELS.get(metric, (metric, "", ""))
    text = f"{zh}\n{en}" if en else zh
    return f"{text} ({unit})" if unit else text


def _find_cjk(names: set[str]) -> str | None:
    return next((name for name in CJK_FONTS if name in names), None)


def cjk_font() -> str:
    found = _find_cjk({f.name for f in font_manager.fontManager.ttflist})
    if found is None:
        # matplotlib caches its font list; a cache built before fonts-noto-cjk was installed (a machine set up in
        # that order, as CI's is) never sees it. Register the system's CJK font files directly.
        for path in font_manager.findSystemFonts():
            if "CJK" in Path(path).name:
                font_manager.fontManager.addfont(path)
        found = _find_cjk({f.name for f in font_manager.fontManager.ttflist})
    if found is not None:
        return found
    raise MissingGlyphsError(
        "no CJK font found for the Chinese labels (install fonts-noto-cjk: apt-get install fonts-noto-cjk; "
        "then remove matplotlib's font cache if the font is still not seen)"
    )


def check_glyphs(text: str, font: str | None = None) -> None:
    """Raise if the chosen font lacks a glyph of ``text`` (a chart would show empty boxes)."""
    from matplotlib.ft2font import FT2Font

    path = font_manager.findfont(
        font_manager.FontProperties(family=font or cjk_font()), fallback_to_default=False
    )
    ft = FT2Font(path)
    missing = sorted({ch for ch in text if not ch.isspace() and ft.get_char_index(ord(ch)) == 0})
    if missing:
        raise MissingGlyphsError(f"font {path} has no glyph for {''.join(missing)!r}")


def setup_style() -> str:
    """Apply the thesis style; returns the CJK font used."""
    font = cjk_font()
    check_glyphs(
        "".join(zh for zh, _, _ in METRIC_LABELS.values())
        + "".join(PARAM_LABELS.values())
        + "".join(VALUE_LABELS.values())
        + "单元格重复次数误差实验组目标≥≤",
        font,
    )
    warnings.filterwarnings("error", message=r".*Glyph .* missing from font.*")
    mpl.rcParams.update(
        {
            "font.family": "sans-serif",
            "font.sans-serif": [font, "DejaVu Sans"],
            "axes.unicode_minus": False,
            "font.size": 9,
            "axes.titlesize": 10,
            "axes.labelsize": 9,
            "legend.fontsize": 8,
            "xtick.labelsize": 8,
            "ytick.labelsize": 8,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "axes.grid.axis": "y",
            "grid.alpha": 0.3,
            "axes.prop_cycle": cycler(color=PALETTE),
            "figure.figsize": (4.8, 3.2),
            "figure.dpi": 100,
            "savefig.dpi": 300,
            "savefig.bbox": "tight",
            "pdf.fonttype": 42,
        }
    )
    return font


def _near_one(metric: str, means: np.ndarray) -> bool:
    finite = means[~np.isnan(means)]
    return metric.endswith(("_rate", "_success")) and finite.size > 0 and float(finite.min()) >= 0.9


def _draw(ax: Any, stats: pd.DataFrame, metric: str, *, annotate: bool, label_size: float = 8) -> None:
    """Bars from zero; for rates that are all near 1, points with error bars on a zoomed axis instead (a bar
    from zero would hide a 99.3 % vs 100 % difference). Error bars: 95 % confidence interval of the mean over
    repetitions (Student's t), clipped at zero for quantities that cannot be negative."""
    x = np.arange(len(stats))
    means = stats["mean"].astype(float).to_numpy()
    stds = stats["std"].fillna(0).astype(float).to_numpy()
    reps = stats["repetitions"].astype(int).to_numpy()
    half = np.array([ci95(sd, int(r)) for sd, r in zip(stds, reps, strict=True)])
    lower = np.minimum(half, np.nan_to_num(means, nan=0.0).clip(min=0.0))
    upper = half.copy()
    if metric.endswith(("_rate", "_success")):
        upper = np.minimum(half, (1.0 - np.nan_to_num(means, nan=1.0)).clip(min=0.0))
    colors = [PALETTE[i % len(PALETTE)] for i in x]
    if _near_one(metric, means):
        for i in range(len(stats)):
            ax.errorbar(i, means[i], yerr=[[lower[i]], [upper[i]]], fmt="o", color=colors[i], capsize=4,
                        markersize=6)  # fmt: skip
        low = float(np.nanmin(means - lower))
        target = TARGETS.get(metric)
        if target is not None:
            low = min(low, target[0])
        pad = max(0.002, (1.0 - low) * 0.25)
        ax.set_ylim(low - pad, 1.0 + pad)
        ax.set_xlim(-0.6, len(stats) - 0.4)
        ax.axhline(1.0, color="0.6", linewidth=0.8, linestyle=":")
    else:
        ax.bar(x, np.nan_to_num(means), yerr=[lower, upper], capsize=4, color=colors, width=0.6)
        if metric.endswith("_rate") and np.nanmax(np.nan_to_num(means, nan=0.0)) <= 1.0:
            ax.set_ylim(0, 1.12)
    target = TARGETS.get(metric)
    if target is not None:
        value, sense = target
        ax.axhline(value, color="#c00000", linewidth=1.0, linestyle="--", zorder=0)
        ax.annotate(f"目标 target {sense} {value:g}", (1.0, value), xycoords=("axes fraction", "data"),
                    ha="right", va="bottom", fontsize=max(6.5, label_size - 1), color="#c00000")  # fmt: skip
    cells = list(stats["cell"])
    ax.set_xticks(x, [cell_label(c) for c in cells], fontsize=label_size)
    ax.set_xlabel(cell_axis_title(cells), fontsize=label_size)
    if annotate:
        for pos, (m, up, r, n) in enumerate(zip(means, upper, reps, stats["n_events"], strict=True)):
            if not np.isnan(m):  # above the error bar, so the two never overlap
                ax.annotate(f"{m:.4g}\nn={int(n)}, r={int(r)}", (pos, m + up), ha="center", va="bottom",
                            fontsize=7, xytext=(0, 3), textcoords="offset points")  # fmt: skip


def comparison_bar(stats: pd.DataFrame, metric: str, title: str | None = None) -> Figure:
    """One bar (or point) per cell: mean over repetitions, error bar = 95 % CI of the mean, n annotated."""
    fig, ax = plt.subplots()
    _draw(ax, stats, metric, annotate=True)
    ax.set_ylabel(label(metric))
    if title:
        ax.set_title(title)
    return fig


def latency_cdf(samples: dict[str, np.ndarray], metric_label: str) -> Figure:
    """Empirical CDF per cell of latency samples in ms (log x): the whole distribution, not an average."""
    fig, ax = plt.subplots()
    for i, (cell, values) in enumerate(samples.items()):
        if len(values) == 0:
            continue
        v = np.sort(np.clip(values, 0.01, None))
        ax.step(v, np.arange(1, len(v) + 1) / len(v), where="post", label=f"{cell} (n={len(v)})",
                color=PALETTE[i % len(PALETTE)])  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel(metric_label)
    ax.set_ylabel("累积比例\ncumulative share")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right")
    return fig


def save(fig: Figure, experiment: str, metric: str, out_dir: str | Path) -> list[Path]:
    """``<out_dir>/<experiment>__<metric>.png`` and ``.pdf``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{experiment}__{metric}.png", out / f"{experiment}__{metric}.pdf"]
    for p in paths:
        fig.savefig(p, metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
    plt.close(fig)
    return paths


def headline_grid(panels: Sequence[tuple[str, str, pd.DataFrame]]) -> Figure:
    """The summary: one small chart per (experiment, metric), two per row so it reads at A4 text width
    (16 cm) with 7 pt labels."""
    n = max(1, len(panels))
    cols = min(2, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.3, 2.6 * rows), squeeze=False)
    for ax, (exp, metric, stats) in zip(axes.flat, panels, strict=False):
        _draw(ax, stats, metric, annotate=False, label_size=7)
        ax.set_title(f"{exp}: {label(metric).splitlines()[0]}", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig
