"""Metrics of one run, computed from the driver's ledgers (sends, receives, events) and the server's /metrics.

Every function is pure (DataFrames in, a dict of figures out) and returns, next to each figure, the ``n`` it was
computed from, so a reader can tell 99.9 % of 10 from 99.9 % of 100,000. Definitions (also in
docs/experiments.md):

* **message key**: ``cmid`` (``<client>-<n>``): unique per run, identical across resends of one message.
* **expected pair**: (send, recipient device) for every member of the send's conversation except the sender.
* **delivery_rate**: expected pairs released to the recipient at least once / expected pairs, over every send
  the application attempted (acknowledged or not): what a user sees. ``delivery_rate_acked`` restricts it to
  sends the sender holds as sent (``acked``, or ``written`` when the ack policy is off).
* **duplicate_rate**: extra releases of the same message to the same device / delivered pairs.
* **order violations**: per (recipient, conversation) stream, releases whose ``seq`` is not above the previous
  one; **sender-order violations**: releases of a sender's message after a later message of the same sender.
* **push order / duplicates** (``push_*``): the same checks on the pushes as they arrived, before the client's
  ordering buffer (the ``arrivals`` table): what the server sent. The release-side figures above are what the
  user sees after the buffer has repaired it, so they hold by construction when the buffer works.
* **recovered_by_sync_rate**: delivered pairs whose first release came through a sync, not a push.
* **history reads** (``history_*``, the ``history`` table): client-timed REST pages of older messages, each
  filed by the age of its oldest message against the cell's tier ages (``store.tiering.hot_days`` /
  ``warm_days``): ``hot``, ``warm`` or ``cold`` — the tier that page reaches with tiering on, the same ages in
  the hot store with it off. Pages that came back empty or failed are counted in ``history_error_rate``, not in
  the latencies; reads that fell due while the client had its cap in flight were not made (``history_skipped_rate``:
  the server was not keeping up with the offered reads).
* **account calls** (``rest_*``, the ``rest`` table): client-timed REST calls of the workload's ``search``,
  ``requests`` and ``befriend`` rates. ``rest_<kind>_p*_ms`` over the answered ones (200/201; for ``befriend`` also
  409, "already asked or friends"); ``rest_error_rate`` over the calls made; ``rest_skipped_rate`` as for history.
* **replica reads** (``replica_*``, from /metrics, only when a user store has a replica): ``replica_read_share``
  is the user store's reads the replica served / all its reads (``wsim_store_op_seconds`` by side; 0 for a MySQL
  user store without a replica);
  ``replica_fallbacks`` the replica-routed reads the primary served instead (lag, breaker, timeouts, detached).
* latencies: HDR histograms (3 significant digits) of send->ack and send->deliver, in ms. ``send_deliver_*``
  counts pushes only; ``send_deliver_all_*`` counts the first release by any path (push or sync): when the
  message became visible to the recipient, slow recoveries included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from hdrh.histogram import HdrHistogram

from experiments.analysis import prom
from strategies.store.tiered import DAY_MS

SENT_STATES = ("acked", "written")
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def figure(value: float | None, n: int) -> dict[str, Any]:
    return {
        "value": None if value is None or (isinstance(value, float) and np.isnan(value)) else value,
        "n": n,
    }


def ratio(num: float, den: float) -> float | None:
    return None if den <= 0 else num / den


def hdr_percentiles(values_us: Iterable[int] | np.ndarray, prefix: str) -> dict[str, dict[str, Any]]:
    """``<prefix>_p50_ms`` ... from microsecond samples, through an HDR histogram (1 us .. 1 h)."""
    h = HdrHistogram(1, 3_600_000_000, 3)
    arr = np.asarray(list(values_us) if not isinstance(values_us, np.ndarray) else values_us, dtype=np.int64)
    arr = np.clip(arr, 1, 3_600_000_000)
    values, counts = np.unique(arr, return_counts=True)
    for v, c in zip(values.tolist(), counts.tolist(), strict=True):
        h.record_value(int(v), int(c))
    n = int(h.get_total_count())
    out: dict[str, dict[str, Any]] = {}
    for p in PERCENTILES:
        key = f"{prefix}_p{p:g}_ms".replace(".", "_")
        out[key] = figure(h.get_value_at_percentile(p) / 1000 if n else None, n)
    out[f"{prefix}_max_ms"] = figure(h.get_max_value() / 1000 if n else None, n)
    return out


def cmid_number(cmid: pd.Series) -> pd.Series:
    return pd.to_numeric(cmid.str.rsplit("-", n=1).str[-1], errors="coerce")


def expected_pairs(sends: pd.DataFrame, members: Mapping[str, list[int]]) -> pd.DataFrame:
    """One row per (send, recipient): every member of the conversation except the sending client."""
    if sends.empty:
        return pd.DataFrame(columns=["cmid", "client", "conv", "state", "t_send_ns", "recipient"])
    base = sends[["cmid", "client", "conv", "state", "t_send_ns"]].copy()
    base["recipient"] = base["conv"].map(lambda c: list(members.get(c, ())))
    pairs = base.explode("recipient").dropna(subset=["recipient"])
    pairs["recipient"] = pairs["recipient"].astype(np.int64)
    return pairs[pairs["recipient"] != pairs["client"]].reset_index(drop=True)


def delivery(sends: pd.DataFrame, receives: pd.DataFrame, members: Mapping[str, list[int]]) -> dict[str, Any]:
    pairs = expected_pairs(sends, members)
    counts = (
        receives.groupby(["client", "cmid"]).size().rename("copies").reset_index()
        if not receives.empty
        else pd.DataFrame(columns=["client", "cmid", "copies"])
    )
    counts = counts.rename(columns={"client": "recipient"})
    joined = pairs.merge(counts, on=["recipient", "cmid"], how="left")
    joined["copies"] = joined["copies"].fillna(0).astype(np.int64)
    total = len(joined)
    delivered = int((joined["copies"] > 0).sum())
    acked = joined[joined["state"].isin(SENT_STATES)]
    acked_delivered = int((acked["copies"] > 0).sum())
    extra = int((joined["copies"] - 1).clip(lower=0).sum())
    n_sends = len(sends)
    states = sends["state"].value_counts().to_dict() if n_sends else {}
    return {
        "sends": figure(float(n_sends), n_sends),
        "send_success_rate": figure(ratio(sum(states.get(s, 0) for s in SENT_STATES), n_sends), n_sends),
        "sends_failed": figure(float(states.get("failed", 0)), n_sends),
        "sends_unknown": figure(float(states.get("unknown", 0)), n_sends),
        "expected_deliveries": figure(float(total), total),
        "delivery_rate": figure(ratio(delivered, total), total),
        "delivery_rate_acked": figure(ratio(acked_delivered, len(acked)), len(acked)),
        "lost_deliveries": figure(float(total - delivered), total),
        "duplicate_rate": figure(ratio(extra, delivered), delivered),
        "duplicate_deliveries": figure(float(extra), delivered),
    }


def ordering(receives: pd.DataFrame) -> dict[str, Any]:
    if receives.empty:
        return {
            "order_violations": figure(0.0, 0),
            "sender_order_violations": figure(0.0, 0),
            "streams_in_order_rate": figure(None, 0),
        }
    r = receives.reset_index(drop=True)
    r["_row"] = np.arange(len(r))
    r = r.sort_values(["client", "conv", "t_recv_ns", "_row"], kind="stable")
    prev_max = r.groupby(["client", "conv"])["seq"].cummax().groupby([r["client"], r["conv"]]).shift(1)
    seq_bad = (r["seq"] <= prev_max).fillna(False)
    r["_n"] = cmid_number(r["cmid"])
    prev_n = r.groupby(["client", "conv", "sender_device"])["_n"].cummax()
    prev_n = prev_n.groupby([r["client"], r["conv"], r["sender_device"]]).shift(1)
    sender_bad = (r["_n"] < prev_n).fillna(False)
    r["_bad"] = seq_bad | sender_bad
    streams = r.groupby(["client", "conv"])["_bad"].any()
    n_streams = len(streams)
    return {
        "order_violations": figure(float(seq_bad.sum()), len(r)),
        "sender_order_violations": figure(float(sender_bad.sum()), len(r)),
        "streams_in_order_rate": figure(ratio(float((~streams).sum()), n_streams), n_streams),
    }


def push_order(arrivals: pd.DataFrame) -> dict[str, Any]:
    """Order and duplicates of the pushes as they arrived (before the ordering buffer), per (device, conv)."""
    if arrivals.empty:
        return {
            "push_order_violations": figure(None, 0),
            "push_duplicates": figure(None, 0),
            "push_duplicate_rate": figure(None, 0),
            "push_streams_in_order_rate": figure(None, 0),
        }
    a = arrivals.reset_index(drop=True)
    a["_row"] = np.arange(len(a))
    a = a.sort_values(["client", "conv", "t_recv_ns", "_row"], kind="stable")
    dup = a.duplicated(["client", "conv", "seq"], keep="first")
    fresh = a[~dup]
    prev_max = (
        fresh.groupby(["client", "conv"])["seq"].cummax().groupby([fresh["client"], fresh["conv"]]).shift(1)
    )
    late = (fresh["seq"] < prev_max).fillna(False)
    bad_streams = late.groupby([fresh["client"], fresh["conv"]]).any()
    n_streams = len(bad_streams)
    return {
        "push_order_violations": figure(float(late.sum()), len(fresh)),
        "push_duplicates": figure(float(dup.sum()), len(a)),
        "push_duplicate_rate": figure(ratio(float(dup.sum()), len(a)), len(a)),
        "push_streams_in_order_rate": figure(ratio(float((~bad_streams).sum()), n_streams), n_streams),
    }


def recovered_by_sync(receives: pd.DataFrame) -> dict[str, Any]:
    """Share of delivered (device, message) pairs whose first release came through a sync."""
    if receives.empty:
        return {"recovered_by_sync_rate": figure(None, 0)}
    first = receives.sort_values("t_recv_ns", kind="stable").drop_duplicates(["client", "cmid"])
    n = len(first)
    return {"recovered_by_sync_rate": figure(ratio(float((first["via"] == "sync").sum()), n), n)}


def latency(sends: pd.DataFrame, receives: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {}
    acked = sends[(sends["state"] == "acked") & (sends["t_ack_ns"] > 0)] if not sends.empty else sends
    out.update(hdr_percentiles(((acked["t_ack_ns"] - acked["t_send_ns"]) // 1000).to_numpy(), "send_ack"))
    rec = receives[receives["t_sent_ns"] > 0] if not receives.empty else receives
    first = rec.sort_values("t_recv_ns").drop_duplicates(["client", "cmid"]) if not rec.empty else rec
    push = first[first["via"] == "push"] if not first.empty else first
    out.update(hdr_percentiles(((push["t_recv_ns"] - push["t_sent_ns"]) // 1000).to_numpy(), "send_deliver"))
    out.update(
        hdr_percentiles(((first["t_recv_ns"] - first["t_sent_ns"]) // 1000).to_numpy(), "send_deliver_all")
    )
    return out


AGE_BANDS = ("hot", "warm", "cold")


def answered_pages(history: pd.DataFrame) -> pd.DataFrame:
    """History reads that came back with messages (the ones whose latency is a page's)."""
    return history[(history["status"] == 200) & (history["count"] > 0)]


REST_KINDS = ("search", "requests", "befriend")


def answered_calls(rest: pd.DataFrame) -> pd.Series:
    """Which account calls got an answer: 200/201, and 409 ("already asked or friends") for ``befriend``."""
    return rest["status"].isin((200, 201)) | ((rest["kind"] == "befriend") & (rest["status"] == 409))


def rest_calls(rest: pd.DataFrame) -> dict[str, Any]:
    """Account calls by kind (module docstring)."""
    out: dict[str, Any] = {}
    if rest.empty:
        return out
    due = len(rest)
    made = rest[rest["status"] != -1]
    answered = answered_calls(made)
    out["rest_calls"] = figure(float(len(made)), len(made))
    out["rest_skipped_rate"] = figure(ratio(float(due - len(made)), float(due)), due)
    out["rest_error_rate"] = figure(ratio(float((~answered).sum()), float(len(made))), len(made))
    ok = made[answered]
    for kind in REST_KINDS:
        if (made["kind"] == kind).any():
            out.update(hdr_percentiles(ok.loc[ok["kind"] == kind, "latency_us"].to_numpy(), f"rest_{kind}"))
    return out


def history_reads(history: pd.DataFrame, hot_days: float, warm_days: float) -> dict[str, Any]:
    """History page latency per age band (see the module docstring), and the share of reads that failed."""
    out: dict[str, Any] = {}
    if history.empty:
        return out
    due = len(history)
    skipped = int((history["status"] == -1).sum())  # not made: the client's in-flight cap (back-pressure)
    n = due - skipped
    ok = answered_pages(history)
    out["history_reads"] = figure(float(n), n)
    out["history_skipped_rate"] = figure(ratio(float(skipped), float(due)), due)
    out["history_error_rate"] = figure(ratio(float(n - len(ok)), float(n)), n)
    out.update(hdr_percentiles(ok["latency_us"].to_numpy(), "history_read"))
    age_days = (ok["t_ns"] // 1_000_000 - ok["oldest_ts_ms"]) / DAY_MS
    band = np.where(age_days <= hot_days, "hot", np.where(age_days <= warm_days, "warm", "cold"))
    for name in AGE_BANDS:
        out.update(hdr_percentiles(ok.loc[band == name, "latency_us"].to_numpy(), f"history_{name}"))
    return out


def offline_intervals(events: pd.DataFrame, end_ns: int) -> dict[int, list[tuple[int, int]]]:
    """Per client, the [offline, online) intervals the client chose (OfflineFault)."""
    out: dict[int, list[tuple[int, int]]] = {}
    if events.empty:
        return out
    ev = events[events["event"].isin(["offline", "online"])].sort_values("t_ns")
    for client, grp in ev.groupby("client"):
        start: int | None = None
        for t, e in zip(grp["t_ns"], grp["event"], strict=True):
            if e == "offline" and start is None:
                start = int(t)
            elif e == "online" and start is not None:
                out.setdefault(int(client), []).append((start, int(t)))
                start = None
        if start is not None:
            out.setdefault(int(client), []).append((start, end_ns))
    return out


def offline_push(
    sends: pd.DataFrame,
    receives: pd.DataFrame,
    events: pd.DataFrame,
    members: Mapping[str, list[int]],
    end_ns: int,
) -> dict[str, Any]:
    """Messages sent to a device while it was offline, delivered once it came back (through sync)."""
    intervals = offline_intervals(events, end_ns)
    pairs = expected_pairs(sends, members)
    if not intervals or pairs.empty:
        return {"offline_push_success": figure(None, 0), "offline_push_p99_ms": figure(None, 0)}
    mask = np.zeros(len(pairs), dtype=bool)
    online_at = np.zeros(len(pairs), dtype=np.int64)
    rec_arr = pairs["recipient"].to_numpy()
    t_arr = pairs["t_send_ns"].to_numpy()
    for client, spans in intervals.items():
        sel = rec_arr == client
        for a, b in spans:
            hit = sel & (t_arr >= a) & (t_arr < b)
            mask |= hit
            online_at[hit] = b
    off = pairs[mask].copy()
    off["online_ns"] = online_at[mask]
    if off.empty:
        return {"offline_push_success": figure(None, 0), "offline_push_p99_ms": figure(None, 0)}
    first = receives.sort_values("t_recv_ns").drop_duplicates(["client", "cmid"])[
        ["client", "cmid", "t_recv_ns"]
    ]
    joined = off.merge(first.rename(columns={"client": "recipient"}), on=["recipient", "cmid"], how="left")
    got = joined["t_recv_ns"].notna()
    after = (joined.loc[got, "t_recv_ns"] - joined.loc[got, "online_ns"]).clip(lower=0) // 1000
    lat = hdr_percentiles(after.to_numpy(), "offline_push")
    return {
        "offline_push_success": figure(ratio(float(got.sum()), len(joined)), len(joined)),
        "offline_push_p99_ms": lat["offline_push_p99_ms"],
        "offline_push_p50_ms": lat["offline_push_p50_ms"],
    }


def reconnects(events: pd.DataFrame, fault_windows: list[tuple[int, int]] | None = None) -> dict[str, Any]:
    """Episodes start at an unexpected close (code != 1000) or a failed connect while down, and succeed at the
    next full resync ('reconnected'). Also counts disconnects outside injected fault windows."""
    if events.empty:
        return {
            "reconnect_success_rate": figure(None, 0),
            "reconnect_p50_ms": figure(None, 0),
            "reconnect_p99_ms": figure(None, 0),
            "disconnects": figure(0.0, 0),
            "spontaneous_disconnects": figure(0.0, 0),
        }
    ev = events.sort_values(["client", "t_ns"])
    episodes = succeeded = 0
    times_us: list[int] = []
    spontaneous = disconnects = 0
    windows = fault_windows or []
    for _, grp in ev.groupby("client"):
        down = False
        last_drop = -(10**19)
        for t, e, code, detail in zip(grp["t_ns"], grp["event"], grp["code"], grp["detail"], strict=True):
            if e == "drop":
                last_drop = int(t)
            elif e == "closed" and int(code) != 1000:
                disconnects += 1
                caused = int(t) - last_drop < 2_000_000_000 or any(a <= t <= b for a, b in windows)
                spontaneous += 0 if caused else 1
                if not down:
                    down = True
                    episodes += 1
            elif e == "reconnected" and down:
                down = False
                succeeded += 1
                times_us.append(max(1, int(detail) // 1000) if str(detail).isdigit() else 1)
    lat = hdr_percentiles(times_us, "reconnect")
    return {
        "reconnect_success_rate": figure(ratio(succeeded, episodes), episodes),
        "reconnect_p50_ms": lat["reconnect_p50_ms"],
        "reconnect_p99_ms": lat["reconnect_p99_ms"],
        "disconnects": figure(float(disconnects), int(ev["client"].nunique())),
        "spontaneous_disconnects": figure(float(spontaneous), int(ev["client"].nunique())),
    }


def throughput(sends: pd.DataFrame, receives: pd.DataFrame, duration_s: float) -> dict[str, Any]:
    acked = int(sends["state"].isin(SENT_STATES).sum()) if not sends.empty else 0
    return {
        "sent_per_s": figure(acked / duration_s if duration_s > 0 else None, acked),
        "delivered_per_s": figure(len(receives) / duration_s if duration_s > 0 else None, len(receives)),
    }


def server_metrics(before: str | list[str], after: str | list[str]) -> dict[str, Any]:
    """Figures from two /metrics scrapes (a node restart in between resets counters: the after scrape alone).
    With several nodes, each node's scrapes are compared and the results summed (counters and buckets add)."""
    befores = [before] if isinstance(before, str) else before
    afters = [after] if isinstance(after, str) else after
    b, a = prom.parse(befores[0]), prom.parse(afters[0])
    if len(afters) > 1:
        b, a = prom.merged_deltas([prom.parse(x) for x in befores], [prom.parse(x) for x in afters])
    hits = prom.delta(b, a, "wsim_cache_hits_total")
    misses = prom.delta(b, a, "wsim_cache_misses_total")
    hist = prom.histogram_summary(b, a, "wsim_history_query_seconds")
    ack = prom.histogram_summary(b, a, "wsim_send_ack_seconds")
    dlv = prom.histogram_summary(b, a, "wsim_send_deliver_seconds")
    n_hist, n_ack, n_dlv = int(hist["n"] or 0), int(ack["n"] or 0), int(dlv["n"] or 0)
    return replica_metrics(b, a) | {
        "cache_hit_rate": figure(ratio(hits, hits + misses), int(hits + misses)),
        "history_p50_ms": figure(hist["p50"], n_hist),
        "history_p99_ms": figure(hist["p99"], n_hist),
        "server_send_ack_p99_ms": figure(ack["p99"], n_ack),
        "server_send_deliver_p99_ms": figure(dlv["p99"], n_dlv),
        "server_retries": figure(prom.delta(b, a, "wsim_delivery_retries_total"), n_dlv),
        "server_dead_letters": figure(prom.delta(b, a, "wsim_dead_letters_total"), n_dlv),
        "server_dedup_hits": figure(prom.delta(b, a, "wsim_dedup_hits_total"), n_ack),
        "server_messages_stored": figure(prom.delta(b, a, "wsim_messages_stored_total"), n_ack),
    }


def replica_metrics(b: prom.Samples, a: prom.Samples) -> dict[str, Any]:
    """The user store's replica reads (module docstring); nothing when the user store is not MySQL (a MySQL user
    store without a replica: share 0)."""
    op = "wsim_store_op_seconds_count"
    if not any(n == op and dict(lab).get("op") == "users_read" for n, lab in a):
        return {}
    replica = prom.delta(b, a, op, store="mysql-replica", op="users_read")
    primary = prom.delta(b, a, op, store="mysql-primary", op="users_read")
    reads = int(replica + primary)
    lag = [v for (n, _), v in a.items() if n == "wsim_store_replica_lag_seconds"]
    return {
        "replica_read_share": figure(ratio(replica, replica + primary), reads),
        "replica_fallbacks": figure(prom.delta(b, a, "wsim_store_replica_fallbacks_total"), reads),
        "replica_lag_s": figure(max(lag) if lag else None, len(lag)),
    }


def resources(cpu_percent: list[float], rss_bytes: list[int]) -> dict[str, Any]:
    n = len(cpu_percent)
    return {
        "server_cpu_median_percent": figure(float(np.median(cpu_percent)) if n else None, n),
        "server_cpu_p90_percent": figure(float(np.percentile(cpu_percent, 90)) if n else None, n),
        "server_rss_max_mib": figure(max(rss_bytes) / 2**20 if rss_bytes else None, len(rss_bytes)),
    }


def compute_all(
    sends: pd.DataFrame,
    receives: pd.DataFrame,
    events: pd.DataFrame,
    members: Mapping[str, list[int]],
    *,
    duration_s: float,
    end_ns: int,
    fault_windows: list[tuple[int, int]] | None = None,
    arrivals: pd.DataFrame | None = None,
    history: pd.DataFrame | None = None,
    tier_days: tuple[float, float] = (7.0, 90.0),
    rest: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Every ledger metric of one run (``tier_days``: the cell's hot and warm ages, for the history bands)."""
    out: dict[str, Any] = {}
    out.update(delivery(sends, receives, members))
    out.update(ordering(receives))
    out.update(push_order(arrivals if arrivals is not None else pd.DataFrame()))
    out.update(recovered_by_sync(receives))
    out.update(latency(sends, receives))
    out.update(offline_push(sends, receives, events, members, end_ns))
    out.update(reconnects(events, fault_windows))
    out.update(throughput(sends, receives, duration_s))
    if history is not None:
        out.update(history_reads(history, *tier_days))
    if rest is not None:
        out.update(rest_calls(rest))
    return out
